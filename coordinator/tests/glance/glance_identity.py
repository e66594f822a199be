"""A paste filter that makes every request look authenticated to Glance,
without Keystone. Used by glance-lab.sh (see README.md beside this file).

It stands where keystonemiddleware's auth_token would, in front of Glance's
ContextMiddleware (paste `glance.api.middleware.context:ContextMiddleware`):
that middleware builds the request context from the identity headers which
auth_token sets after validating a token. Without them (Glance's default
pipeline and its `unauthenticated-context`) the context has no roles and
Glance's default policy answers 403 to everything.

Like auth_token, it first removes whatever identity headers the client sent,
then sets its own: X-Identity-Status: Confirmed, the roles, the project and
the user, all from the paste section's options (written by glance-lab.sh):

    [filter:identity]
    paste.filter_factory = glance_identity:filter_factory
    project_id = ...
    project_name = ...
    user_id = ...
    user_name = ...
    roles = admin,member,reader

X-Auth-Token is left as the client sent it (Glance only copies it into the
context; nothing validates it).
"""

# Headers keystonemiddleware's auth_token removes from incoming requests
# (and then sets from the token), as WSGI environ keys.
_IDENTITY_PREFIXES = (
    "HTTP_X_IDENTITY_STATUS",
    "HTTP_X_SERVICE_IDENTITY_STATUS",
    "HTTP_X_DOMAIN_",
    "HTTP_X_PROJECT_",
    "HTTP_X_TENANT",
    "HTTP_X_USER",
    "HTTP_X_ROLE",
    "HTTP_X_SERVICE_",
    "HTTP_X_IS_ADMIN_PROJECT",
    "HTTP_X_SYSTEM_SCOPE",
    "HTTP_X_TRUST_",
    "HTTP_X_SERVICE_CATALOG",
    "HTTP_OPENSTACK_SYSTEM_SCOPE",
)

_DEFAULTS = {
    "project_id": "c0ffee00000000000000000000000001",
    "project_name": "ingot-lab",
    "user_id": "c0ffee00000000000000000000000002",
    "user_name": "ingot-lab",
    "domain_id": "default",
    "domain_name": "Default",
    "roles": "admin,member,reader",
}


class IdentityFilter:
    def __init__(self, app, conf):
        self.app = app
        c = dict(_DEFAULTS)
        c.update({k: v for k, v in conf.items() if k in _DEFAULTS and v})
        self.headers = {
            "HTTP_X_IDENTITY_STATUS": "Confirmed",
            "HTTP_X_ROLES": c["roles"],
            "HTTP_X_ROLE": c["roles"],
            "HTTP_X_PROJECT_ID": c["project_id"],
            "HTTP_X_TENANT_ID": c["project_id"],
            "HTTP_X_TENANT": c["project_id"],
            "HTTP_X_PROJECT_NAME": c["project_name"],
            "HTTP_X_TENANT_NAME": c["project_name"],
            "HTTP_X_PROJECT_DOMAIN_ID": c["domain_id"],
            "HTTP_X_PROJECT_DOMAIN_NAME": c["domain_name"],
            "HTTP_X_USER_ID": c["user_id"],
            "HTTP_X_USER": c["user_id"],
            "HTTP_X_USER_NAME": c["user_name"],
            "HTTP_X_USER_DOMAIN_ID": c["domain_id"],
            "HTTP_X_USER_DOMAIN_NAME": c["domain_name"],
            "HTTP_X_IS_ADMIN_PROJECT": "True",
        }

    def __call__(self, environ, start_response):
        for key in [k for k in environ if k.startswith(_IDENTITY_PREFIXES)]:
            del environ[key]
        environ.update(self.headers)
        return self.app(environ, start_response)


def filter_factory(global_conf, **local_conf):
    def _filter(app):
        return IdentityFilter(app, local_conf)

    return _filter

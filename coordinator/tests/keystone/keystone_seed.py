"""Seeds the keystone-lab Keystone with the projects, users and role
assignments of the coordinator's auth tests, through Keystone's v3 API
(plain `requests`, which the keystone venv has). Idempotent: what exists is
looked up by name and kept. Prints the ids as one JSON object on stdout.

Usage: keystone_seed.py KEYSTONE_URL(.../v3) [--ironic-url URL]
The admin's password is $KEYSTONE_ADMIN_PASSWORD (default admin-secret).
"""

import argparse
import json
import os
import sys

import requests

DOMAIN = "default"
PASSWORD = "pw"
SERVICE_USER = ("ingot", "ingot-secret")
PROJECTS = ["service", "tenant-a", "tenant-b", "tenant-c"]
ROLES = ["reader", "member", "manager", "admin", "service"]
# user -> [(role, "system" | project name)]
USERS = {
    "sys-admin": [("admin", "system")],
    "sys-member": [("member", "system")],
    "sys-reader": [("reader", "system")],
    "a-member": [("member", "tenant-a")],
    "a-reader": [("reader", "tenant-a")],
    "b-member": [("member", "tenant-b")],
    "a-admin": [("admin", "tenant-a")],
    "b-admin": [("admin", "tenant-b")],
    "c-member": [("member", "tenant-c")],
    # A service user as Nova's: the service role in project service.
    "nova": [("service", "service")],
}


class Keystone:
    def __init__(self, url):
        self.url = url.rstrip("/")
        self.s = requests.Session()
        self.s.headers["Content-Type"] = "application/json"

    def call(self, method, path, body=None, ok=(200, 201, 204)):
        r = self.s.request(method, self.url + path, json=body, timeout=30)
        if r.status_code not in ok:
            sys.exit(f"keystone_seed: {method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def login(self, user, password):
        # System-scoped: the bootstrap gives admin the admin role on the
        # system as well as on project admin; system grants need it.
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": user,
                            "domain": {"id": DOMAIN},
                            "password": password,
                        }
                    },
                },
                "scope": {"system": {"all": True}},
            }
        }
        r = self.s.post(self.url + "/auth/tokens", json=body, timeout=30)
        if r.status_code != 201:
            sys.exit(f"keystone_seed: admin login: {r.status_code} {r.text}")
        self.s.headers["X-Auth-Token"] = r.headers["X-Subject-Token"]

    def find(self, collection, name, **filters):
        params = {"name": name, **filters}
        r = self.s.get(f"{self.url}/{collection}", params=params, timeout=30)
        if r.status_code != 200:
            sys.exit(f"keystone_seed: GET /{collection}: {r.status_code} {r.text}")
        items = [i for i in r.json()[collection] if i.get("name") == name]
        return items[0] if items else None

    def ensure(self, collection, singular, name, body, **filters):
        found = self.find(collection, name, **filters)
        if found:
            return found
        return self.call("POST", f"/{collection}", {singular: {"name": name, **body}})[
            singular
        ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("keystone_url")
    ap.add_argument(
        "--ironic-url",
        help="register service 'baremetal' (type baremetal) with this public "
        "endpoint in RegionOne",
    )
    args = ap.parse_args()

    ks = Keystone(args.keystone_url)
    ks.login("admin", os.environ.get("KEYSTONE_ADMIN_PASSWORD", "admin-secret"))

    roles = {
        r: ks.ensure("roles", "role", r, {}, domain_id=None)["id"] for r in ROLES
    }
    projects = {
        p: ks.ensure(
            "projects",
            "project",
            p,
            {"domain_id": DOMAIN, "enabled": True},
            domain_id=DOMAIN,
        )["id"]
        for p in ["admin"] + PROJECTS
    }

    def user(name, password):
        return ks.ensure(
            "users",
            "user",
            name,
            {"domain_id": DOMAIN, "password": password, "enabled": True},
            domain_id=DOMAIN,
        )["id"]

    users = {"admin": ks.find("users", "admin", domain_id=DOMAIN)["id"]}
    users[SERVICE_USER[0]] = user(*SERVICE_USER)
    # The coordinator's own user: the service role on project service is
    # what identity:validate_token asks of a service (rule:service_role).
    ks.call(
        "PUT",
        f"/projects/{projects['service']}/users/{users['ingot']}"
        f"/roles/{roles['service']}",
    )
    for name, grants in USERS.items():
        users[name] = user(name, PASSWORD)
        for role, target in grants:
            if target == "system":
                path = f"/system/users/{users[name]}/roles/{roles[role]}"
            else:
                path = f"/projects/{projects[target]}/users/{users[name]}/roles/{roles[role]}"
            ks.call("PUT", path)

    out = {
        "keystone_url": ks.url,
        "domain_id": DOMAIN,
        "projects": projects,
        "users": users,
        "roles": roles,
    }

    if args.ironic_url:
        services = ks.call("GET", "/services?type=baremetal")["services"]
        svc = next((s for s in services if s.get("name") == "baremetal"), None)
        if svc is None:
            svc = ks.call(
                "POST",
                "/services",
                {
                    "service": {
                        "name": "baremetal",
                        "type": "baremetal",
                        "description": "Ingot (Ironic API)",
                        "enabled": True,
                    }
                },
            )["service"]
        eps = ks.call(
            "GET", f"/endpoints?service_id={svc['id']}&interface=public"
        )["endpoints"]
        ep = next((e for e in eps if e.get("region_id") == "RegionOne"), None)
        if ep is None:
            ep = ks.call(
                "POST",
                "/endpoints",
                {
                    "endpoint": {
                        "service_id": svc["id"],
                        "interface": "public",
                        "region_id": "RegionOne",
                        "url": args.ironic_url,
                        "enabled": True,
                    }
                },
            )["endpoint"]
        elif ep["url"] != args.ironic_url:
            ep = ks.call(
                "PATCH", f"/endpoints/{ep['id']}", {"endpoint": {"url": args.ironic_url}}
            )["endpoint"]
        out["baremetal"] = {
            "service_id": svc["id"],
            "endpoint_id": ep["id"],
            "url": ep["url"],
        }

    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

"""Nova's ironic-driver calls (nova 34, nova/virt/ironic/driver.py) through
openstacksdk, for three successive instances on one node with one NIC:

1. spawn from a Glance image UUID, power actions, destroy;
2. a spawn whose deploy fails (the Glance image is not active), Nova's
   failed-spawn cleanup (volume targets, ports and port groups by node, VIF
   detach, instance fields patched away), then destroy;
3. spawn again: the NIC must be free, and the node deploys.

Usage: python nova_replay.py <endpoint> <node uuid> <good image> <bad image>.
Exits non-zero on the first failure. Driven by coordinator/tests/nova_replay.rs.
"""
import base64
import gzip
import sys
import time
import uuid

import openstack
from openstack import exceptions

endpoint, node_id, good_image, bad_image = sys.argv[1:5]
conn = openstack.connect(auth_type="none", baremetal_endpoint_override=endpoint)
bm = conn.baremetal

# Nova's _NODE_FIELDS.
FIELDS = ("uuid", "power_state", "target_power_state", "provision_state",
          "target_provision_state", "last_error", "maintenance", "properties",
          "instance_uuid", "traits", "resource_class")


def node_of(instance):
    """Nova's _validate_instance_and_node: the node by instance, with fields."""
    found = list(bm.nodes(instance_id=instance, fields=FIELDS))
    assert len(found) <= 1, found
    return found[0] if found else None


def wait_active(instance):
    """Nova's _wait_for_active: poll by instance until active or failed."""
    for _ in range(150):
        node = node_of(instance)
        if node.provision_state == "active":
            return node
        if node.provision_state == "deploy failed":
            return node
        time.sleep(0.2)
    raise AssertionError("deploy did not finish: %s" % node)


def config_drive():
    """A config drive as Nova sends it: gzip, then base64 (of an ISO; the
    simulated agent does not write it, so a stand-in body does)."""
    return base64.b64encode(gzip.compress(b"\0" * 32768 + b"CD001")).decode()


def spawn(instance, image, vif):
    # The resource tracker's refresh and the scheduler's pick.
    assert any(n.id == node_id for n in bm.nodes(fields=FIELDS))
    node = bm.get_node(node_id, fields=FIELDS)
    assert node.provision_state == "available", node
    assert node.instance_id is None, node
    # prepare_for_spawn: reserve; a second instance is refused (409).
    bm.update_node(node, retry_on_conflict=False, instance_id=instance)
    try:
        bm.update_node(node, retry_on_conflict=False, instance_id=str(uuid.uuid4()))
        raise AssertionError("a second reservation was accepted")
    except exceptions.ConflictException:
        pass
    # _add_instance_info_to_node: the keys Nova writes, as strings.
    info = {
        "image_source": image, "root_gb": "1", "swap_mb": "0",
        "display_name": "server-" + instance[:8], "vcpus": "2",
        "nova_host_id": "compute-1", "memory_mb": "4096", "local_gb": "10",
        "project_id": "p1", "project_name": "demo", "user_id": "u1",
        "user_name": "demo", "flavor_name": "baremetal", "fixed_ips": "[]",
        "floating_ips": "[]",
    }
    assert len(info) == 15
    bm.patch_node(node_id, [{"op": "add", "path": "/instance_info/" + k, "value": v}
                            for k, v in info.items()])
    shown = bm.get_node(node_id)
    assert shown.instance_info["image_source"] == image, shown.instance_info
    assert shown.instance_name == info["display_name"], shown.instance_name
    # _plug_vifs: the port's VIF.
    bm.attach_vif_to_node(node_id, vif, retry_on_conflict=False)
    assert bm.list_node_vifs(node_id) == [vif], bm.list_node_vifs(node_id)
    # validate: Nova needs deploy, power and storage.
    bm.validate_node(node_id, required=("deploy", "power", "storage"))
    # Network metadata for the config drive.
    ports = list(bm.ports(node=node_id, details=True))
    assert ports[0].internal_info.get("tenant_vif_port_id") == vif, ports
    assert list(bm.port_groups(node=node_id, details=True)) == []
    bm.set_node_provision_state(node_id, "active", config_drive=config_drive())
    return wait_active(instance)


def cleanup_deploy(instance):
    """Nova's _cleanup_deploy after a failed spawn."""
    assert list(bm.volume_targets(node=node_id, details=True)) == []
    for port in bm.ports(node=node_id, details=True):
        vif = port.internal_info.get("tenant_vif_port_id")
        if vif:
            bm.detach_vif_from_node(node_id, vif)
    assert list(bm.port_groups(node=node_id, details=True)) == []
    # _remove_instance_info_from_node.
    node = bm.get_node(node_id, fields=FIELDS)
    bm.update_node(node, instance_id=None, instance_info={})


def destroy(instance):
    """Nova's destroy: unprovision, wait until the node is gone from the
    instance, then the cleanup (VIFs already detached by the tear-down)."""
    node = node_of(instance) or bm.get_node(node_id, fields=FIELDS)
    if node.provision_state in ("active", "deploy failed", "error", "wait call-back", "deploying"):
        bm.set_node_provision_state(node_id, "deleted")
    for _ in range(150):
        node = bm.get_node(node_id, fields=FIELDS)
        if node.provision_state == "available" and node.instance_id is None:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("unprovision did not finish: %s" % node)
    for port in bm.ports(node=node_id, details=True):
        assert not port.internal_info.get("tenant_vif_port_id"), port
    assert bm.list_node_vifs(node_id) == []


# 1: spawn, power actions, destroy.
first = str(uuid.uuid4())
node = spawn(first, good_image, "vif-1")
assert node.provision_state == "active", node
full = bm.get_node(node_id)
assert full.instance_info["image_os_hash_algo"] == "sha512", full.instance_info
for action, state in (("power off", "power off"), ("power on", "power on"),
                      ("rebooting", "power on")):
    bm.set_node_power_state(node_id, action, wait=True, timeout=30)
    assert bm.get_node(node_id, fields=FIELDS).power_state == state
destroy(first)

# 2: the deploy fails; Nova cleans up, then destroys.
second = str(uuid.uuid4())
node = spawn(second, bad_image, "vif-2")
assert node.provision_state == "deploy failed", node
assert "is unacceptable" in (node.last_error or ""), node.last_error
cleanup_deploy(second)
assert node_of(second) is None
destroy(second)

# 3: the same node, its one NIC free again.
third = str(uuid.uuid4())
node = spawn(third, good_image, "vif-3")
assert node.provision_state == "active", node
destroy(third)
print("nova replay ok")

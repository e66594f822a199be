"""Nova- and metalsmith-like calls through openstacksdk against the coordinator.

Usage: python sdk_scenario.py <endpoint>. Exits non-zero on the first failure.
Driven by coordinator/tests/openstacksdk.rs.
"""
import sys

import openstack

endpoint = sys.argv[1]
conn = openstack.connect(auth_type="none", baremetal_endpoint_override=endpoint)
bm = conn.baremetal

node = bm.create_node(driver="fake-hardware", name="sdk-1", resource_class="baremetal",
                      properties={"cpus": 2, "memory_mb": 1024, "local_gb": 10})
bm.create_port(address="52:54:00:5d:00:01", node_uuid=node.id)
node = bm.set_node_provision_state(node, "manage", wait=True, timeout=30)
assert node.provision_state == "manageable", node.provision_state
node = bm.set_node_provision_state(node, "provide", wait=True, timeout=30)
assert node.provision_state == "available", node.provision_state
bm.add_node_trait(node, "CUSTOM_SDK")
# Fake power knows no state until one is set; allocations need one (as Ironic).
bm.set_node_power_state(node, "power off", wait=True, timeout=30)
node = bm.get_node(node.id)
# The fields openstacksdk 4.22 reads at 1.109 (issue 14), and fake interfaces
# that all validate.
assert node.health is None and node.instance_name is None, node
assert node.service_step == {}, node.service_step
assert all(r.result for r in bm.validate_node(node, required=()).values())

# metalsmith: allocation by resource class and traits, then VIF, instance_info, validate, deploy.
alloc = bm.create_allocation(name="sdk-host", resource_class="baremetal", traits=["CUSTOM_SDK"])
alloc = bm.wait_for_allocation(alloc, timeout=30)
assert alloc.state == "active" and alloc.node_id == node.id, alloc
bm.attach_vif_to_node(node, "port-vif-1", retry_on_conflict=False)
assert bm.list_node_vifs(node) == ["port-vif-1"], bm.list_node_vifs(node)
bm.patch_node(node, [
    {"op": "add", "path": "/instance_info/image_source", "value": "http://127.0.0.1:8088/img.raw"},
    {"op": "add", "path": "/instance_info/image_checksum", "value": "abc"},
    {"op": "add", "path": "/instance_info/root_gb", "value": 10},
])
v = bm.validate_node(node, required=("deploy", "power"))
node = bm.set_node_provision_state(node, "active", config_drive={"meta_data": {"hostname": "sdk-host"}},
                                   wait=True, timeout=30)
assert node.provision_state == "active", node.provision_state

# Nova: find the node of an instance with a field subset, power off and on.
found = list(bm.nodes(instance_id=alloc.id, fields=["uuid", "power_state", "provision_state", "instance_uuid"]))
assert len(found) == 1 and found[0].id == node.id, found
bm.set_node_power_state(node, "power off", wait=True, timeout=30)
bm.set_node_power_state(node, "power on", wait=True, timeout=30)
assert bm.get_node(node.id).power_state == "power on"

# Undeploy (the allocation goes with the instance), delete.
bm.detach_vif_from_node(node, "port-vif-1")
node = bm.set_node_provision_state(node, "deleted", wait=True, timeout=30)
assert node.provision_state == "available", node.provision_state
assert node.instance_id is None, node.instance_id
bm.delete_node(node)
assert list(bm.nodes()) == []
print("sdk scenario ok")

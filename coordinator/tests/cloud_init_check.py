"""Runs cloud-init's own config drive code on extracted config drives, for
tests/cloud_init.rs.

Usage: PYTHONPATH=<cloud-init's dist-packages> cloud_init_check.py <dir>...

For each directory (the files of a config drive, as a mount would show
them), prints one JSON document with what cloud-init makes of it:

- `read_v2`: `ConfigDriveReader(dir).read_v2()` (the version directory it
  chose, the keys of its result, the metadata, user data, vendor data and
  network data it read);
- `net_json`: `convert_net_json` of the network data, when there is any;
- `datasource`: `DataSourceConfigDrive` reading the directory as its seed
  (what `get_data()` answers, `network_json`, `network_config`, the
  vendor data it keeps, its instance ID and hostname);
- `networking`: the network configuration cloud-init's `Init` would apply
  with that datasource (`_find_networking_config`: the configuration and
  where it came from; `fallback` is the distro's fallback, DHCP on the
  first NIC). The kernel command line and initramfs sources are set to
  none, and the distro is a stand-in that answers its fallback with a
  marker, so that the host running the test does not matter.
"""

import copy
import json
import os
import sys
import tempfile

from cloudinit import helpers, sources, stages
from cloudinit.sources import DataSourceConfigDrive
from cloudinit.sources.helpers import openstack

# The MAC of the test's network_data link, known to cloud-init as eth0 (it
# would otherwise look the MAC up on the host).
KNOWN_MACS = {"52:54:00:12:34:56": "eth0"}


class StandInDistro:
    """The little of a distro that the datasource and Init use here."""

    name = "debian"
    osfamily = "debian"

    def generate_fallback_config(self):
        return {"fallback": "dhcp on the first NIC"}


def text(v):
    if isinstance(v, bytes):
        return v.decode()
    return v


def unset(v):
    if v is sources.UNSET:
        return "UNSET"
    return v


def check(path):
    out = {}
    reader = openstack.ConfigDriveReader(path)
    r = reader.read_v2()
    out["read_v2"] = {
        "version_dir": reader._find_working_version(),
        "keys": sorted(r.keys()),
        "metadata": r["metadata"],
        "userdata": text(r["userdata"]),
        "vendordata2": r.get("vendordata2"),
        "networkdata": copy.deepcopy(r.get("networkdata")),
    }
    if "networkdata" in r:
        out["net_json"] = openstack.convert_net_json(
            r["networkdata"], known_macs=KNOWN_MACS
        )

    tmp = tempfile.mkdtemp()
    paths = helpers.Paths(
        {"cloud_dir": os.path.join(tmp, "cloud"), "run_dir": os.path.join(tmp, "run")}
    )
    os.makedirs(paths.seed_dir)
    os.symlink(os.path.abspath(path), os.path.join(paths.seed_dir, "config_drive"))
    distro = StandInDistro()
    ds = DataSourceConfigDrive.DataSourceConfigDrive({}, distro, paths)
    ds.known_macs = KNOWN_MACS
    found = ds.get_data()
    out["datasource"] = {
        "get_data": found,
        "source": ds.source and os.path.basename(ds.source),
        "network_json": unset(ds.network_json),
        "network_config": ds.network_config,
        "vendordata2_raw": text(ds.vendordata2_raw),
        "userdata_raw": text(ds.userdata_raw),
        "instance_id": ds.get_instance_id(),
        "hostname": ds.metadata.get("local-hostname"),
        "public_keys": ds.get_public_ssh_keys(),
    }

    init = stages.Init(ds_deps=[])
    init._cfg = {}
    init._paths = paths
    init._distro = distro
    init.datasource = ds
    stages.cmdline.read_kernel_cmdline_config = lambda *a, **k: None
    stages.cmdline.read_initramfs_config = lambda *a, **k: None
    cfg, src = init._find_networking_config()
    out["networking"] = {"config": cfg, "source": str(getattr(src, "value", src))}
    return out


print(json.dumps([check(p) for p in sys.argv[1:]], default=repr))

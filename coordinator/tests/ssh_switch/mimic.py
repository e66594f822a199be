#!/usr/bin/python3
"""A login shell that mimics a switch OS's CLI, for coordinator/tests/ssh_switch.rs.

The switch OSes themselves (Cisco IOS and NX-OS, Arista EOS, Juniper Junos,
Dell OS10, SONiC, Cumulus NVUE) cannot run on this machine, so the test's
private sshd runs this script as the ForceCommand. It shows each family's
prompts and modes, accepts only the commands the driver is expected to send
(anything else gets the family's error line), keeps a small per-port state
in a JSON file so that a read back reflects earlier changes (with Junos
commit and NVUE apply semantics: nothing shows before them), and records
every command line with its session in record.jsonl.

usage: mimic.py FAMILY STATE_DIR [DELAY_SECONDS]
FAMILY "flood" writes output without end and never prompts.
"""

import fcntl
import json
import os
import sys
import time

FAMILY = sys.argv[1]
DIR = sys.argv[2]
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
SESSION = "%d-%s" % (os.getpid(), os.environ.get("SSH_CONNECTION", "").replace(" ", "_"))
STATE = os.path.join(DIR, "state-%s.json" % FAMILY)
RECORD = os.path.join(DIR, "record.jsonl")


def out(text):
    sys.stdout.write(text)
    sys.stdout.flush()


def record(**entry):
    entry["session"] = SESSION
    with open(RECORD, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(entry) + "\n")


def load():
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, STATE)


def vlan_list(text):
    vlans = []
    for item in text.replace(",", " ").split():
        if "-" in item:
            a, b = item.split("-")
            vlans.extend(range(int(a), int(b) + 1))
        else:
            vlans.append(int(item))
    for v in vlans:
        if not 1 <= v <= 4094:
            raise ValueError(v)
    return sorted(set(vlans))


def join(vlans, sep=","):
    return sep.join(str(v) for v in vlans)


# --- Cisco IOS, NX-OS, Arista EOS, Dell OS10: exec, config, config-if ------

CISCO = {
    "cisco_ios": {"host": "switch", "if": "config-if", "show": "show running-config interface ",
                  "save": "write memory"},
    "cisco_nxos": {"host": "switch", "if": "config-if", "show": "show running-config interface ",
                   "save": "copy running-config startup-config"},
    "arista_eos": {"host": "switch", "if": "config-if-%s", "show": "show running-config interface ",
                   "save": "copy running-config startup-config"},
    "dell_os10": {"host": "OS10", "if": "conf-if-%s", "show": "show running-configuration interface ",
                  "save": "copy running-configuration startup-configuration"},
}


def cisco_render(port, p):
    f = FAMILY
    lines = []
    mode = p.get("mode")
    if f == "cisco_ios":
        lines += ["Building configuration...", "", "Current configuration : 120 bytes", "!",
                  "interface " + port]
        if p.get("native") is not None:
            lines.append(" switchport trunk native vlan %d" % p["native"])
        if p.get("allowed") is not None:
            lines.append(" switchport trunk allowed vlan " + join(p["allowed"]))
        if p.get("access") is not None and p["access"] != 1:
            lines.append(" switchport access vlan %d" % p["access"])
        if mode:
            lines.append(" switchport mode " + mode)
        lines.append("end")
    elif f == "cisco_nxos":
        lines += ["", "!Command: show running-config interface " + port,
                  "!Running configuration last done at: Sun Dec  6 13:00:00 2026", "",
                  "version 9.3(8) Bios:version  ", "", "interface " + port]
        if mode == "trunk":
            lines.append("  switchport mode trunk")
        if p.get("access") is not None and p["access"] != 1:
            lines.append("  switchport access vlan %d" % p["access"])
        if p.get("native") is not None and p["native"] != 1:
            lines.append("  switchport trunk native vlan %d" % p["native"])
        if p.get("allowed") is not None:
            lines.append("  switchport trunk allowed vlan " + join(p["allowed"]))
    elif f == "arista_eos":
        lines.append("interface " + port)
        if p.get("access") is not None and p["access"] != 1:
            lines.append("   switchport access vlan %d" % p["access"])
        if p.get("native") is not None and p["native"] != 1:
            lines.append("   switchport trunk native vlan %d" % p["native"])
        if p.get("allowed") is not None:
            lines.append("   switchport trunk allowed vlan " + join(p["allowed"]))
        if mode == "trunk":
            lines.append("   switchport mode trunk")
    else:  # dell_os10
        lines += ["!", "interface " + port, " no shutdown"]
        if mode == "trunk":
            lines.append(" switchport mode trunk")
        if p.get("access") is not None and p["access"] != 1:
            lines.append(" switchport access vlan %d" % p["access"])
        if p.get("allowed"):
            lines.append(" switchport trunk allowed vlan " + join(p["allowed"]))
        lines.append(" flowcontrol receive on")
    return "\n".join(lines) + "\n"


def cisco():
    c = CISCO[FAMILY]
    mode, port = "exec", None

    def prompt():
        if mode == "exec":
            return c["host"] + "#"
        if mode == "config":
            return c["host"] + "(config)#"
        short = port.replace("Ethernet", "Et").replace("ethernet", "eth")
        return c["host"] + "(" + (c["if"] % short if "%s" in c["if"] else c["if"]) + ")#"

    invalid = "% Invalid input detected at '^' marker.\n"
    out(prompt())
    for line in sys.stdin:
        cmd = line.strip()
        record(cmd=cmd)
        time.sleep(DELAY)
        state = load()
        if mode == "exec":
            if cmd == "terminal length 0":
                pass
            elif cmd == "configure terminal":
                mode = "config"
                if FAMILY == "cisco_ios":
                    out("Enter configuration commands, one per line.  End with CNTL/Z.\n")
            elif cmd.startswith(c["show"]):
                name = cmd[len(c["show"]):]
                out(cisco_render(name, state.get(name, {})))
            elif cmd == c["save"]:
                out("Building configuration...\n[OK]\n" if FAMILY == "cisco_ios" else "Copy completed successfully.\n")
                record(event="saved")
            else:
                out(invalid)
        elif cmd.startswith("interface ") and mode in ("config", "config-if"):
            mode, port = "config-if", cmd[len("interface "):]
        elif cmd == "end":
            mode = "exec"
        elif cmd == "exit":
            mode = "config" if mode == "config-if" else "exec"
        elif mode == "config-if":
            p = state.setdefault(port, {})
            words = cmd.split()
            try:
                if cmd in ("switchport mode access", "switchport mode trunk"):
                    p["mode"] = words[2]
                    if FAMILY == "dell_os10" and words[2] == "access":
                        p["allowed"] = None
                elif cmd.startswith("switchport access vlan "):
                    p["access"] = vlan_list(words[3])[0]
                elif cmd == "no switchport access vlan":
                    p["access"] = None
                elif cmd.startswith("switchport trunk native vlan ") and FAMILY != "dell_os10":
                    p["native"] = vlan_list(words[4])[0]
                elif cmd == "no switchport trunk native vlan" and FAMILY != "dell_os10":
                    p["native"] = None
                elif cmd.startswith("switchport trunk allowed vlan "):
                    vlans = vlan_list(words[4])
                    if FAMILY == "dell_os10":
                        vlans = sorted(set(vlans) | set(p.get("allowed") or []))
                    p["allowed"] = vlans
                elif cmd == "no switchport trunk allowed vlan" and FAMILY != "dell_os10":
                    p["allowed"] = None
                else:
                    out(invalid)
                    continue
            except (ValueError, IndexError):
                out(invalid)
                continue
            save(state)
        else:
            out(invalid)
        out(prompt())


# --- Juniper Junos: operational and configuration mode, commit -------------

def junos_render(p):
    if not p:
        return "\n"
    lines = []
    if p.get("native") is not None:
        lines.append("native-vlan-id %d;" % p["native"])
    lines += ["unit 0 {", "    family ethernet-switching {"]
    if p.get("mode"):
        lines.append("        interface-mode %s;" % p["mode"])
    members = p.get("members") or []
    if members:
        lines.append("        vlan {")
        if len(members) == 1:
            lines.append("            members %d;" % members[0])
        else:
            lines.append("            members [ %s ];" % join(members, " "))
        lines.append("        }")
    lines += ["    }", "}"]
    return "\n".join(lines) + "\n"


def junos():
    user = "ingot@sw1"
    mode = "operational"
    committed = load()
    candidate = json.loads(json.dumps(committed))
    prefix = "set interfaces "
    eth = " unit 0 family ethernet-switching "
    out("\n--- JUNOS 22.4R3 Kernel 64-bit\n" + user + "> ")
    for line in sys.stdin:
        cmd = line.strip()
        record(cmd=cmd)
        time.sleep(DELAY)
        if mode == "operational":
            if cmd == "set cli screen-length 0":
                out("Screen length set to 0\n")
            elif cmd == "configure":
                mode = "configuration"
                candidate = json.loads(json.dumps(load()))
                out("Entering configuration mode\n\n[edit]\n")
            elif cmd.startswith("show configuration interfaces "):
                out(junos_render(load().get(cmd.split()[3], {})))
            else:
                out("                   ^\nunknown command.\n")
        else:
            words = cmd.split()
            ok = True
            try:
                if cmd == "commit":
                    save(candidate)
                    record(event="saved")
                    out("commit complete\n")
                elif cmd == "exit configuration-mode":
                    mode = "operational"
                    out("Exiting configuration mode\n\n" + user + "> ")
                    continue
                elif cmd.startswith("delete interfaces ") and cmd.endswith(" native-vlan-id"):
                    p = candidate.get(words[2], {})
                    if p.get("native") is None:
                        out("warning: statement not found\n")
                    p["native"] = None
                elif cmd.startswith("delete interfaces ") and cmd.endswith(" unit 0 family ethernet-switching"):
                    p = candidate.get(words[2], {})
                    if not p.get("mode") and not p.get("members"):
                        out("warning: statement not found\n")
                    p["mode"], p["members"] = None, []
                elif cmd.startswith(prefix) and " native-vlan-id " in cmd:
                    candidate.setdefault(words[2], {})["native"] = vlan_list(words[4])[0]
                elif cmd.startswith(prefix) and eth + "interface-mode " in cmd:
                    if words[-1] not in ("access", "trunk"):
                        raise ValueError(words[-1])
                    candidate.setdefault(words[2], {})["mode"] = words[-1]
                elif cmd.startswith(prefix) and eth + "vlan members " in cmd:
                    text = cmd.split("vlan members ", 1)[1].strip("[] ")
                    p = candidate.setdefault(words[2], {})
                    p["members"] = sorted(set(p.get("members") or []) | set(vlan_list(text)))
                else:
                    ok = False
            except (ValueError, IndexError):
                ok = False
            if not ok:
                out("                   ^\nsyntax error.\n")
            out("\n[edit]\n")
        out(user + ("# " if mode == "configuration" else "> "))


# --- SONiC: a Linux shell with sudo config ... ------------------------------

def sonic():
    prompt = "admin@sonic:~$ "
    out("Linux sonic 5.10.0-23-2-amd64 #1 SMP Debian x86_64\n" + prompt)
    for line in sys.stdin:
        cmd = line.strip()
        record(cmd=cmd)
        time.sleep(DELAY)
        state = load()
        members = state.setdefault("members", [])  # [vid, port, "tagged"|"untagged"]
        words = cmd.split()
        try:
            if cmd == "show vlan config":
                rows = sorted(members)
                out("Name        VID  Member       Mode\n--------  -----  -----------  --------\n")
                for vid, port, mode in rows:
                    out("Vlan%-6d %5d  %-11s  %s\n" % (vid, vid, port, mode))
            elif words[:5] == ["sudo", "config", "vlan", "member", "add"]:
                untagged = words[5] == "-u"
                vid, port = int(words[6 if untagged else 5]), words[-1]
                if any(m[0] == vid and m[1] == port for m in members):
                    out("Error: %s is already a member of Vlan%d\n" % (port, vid))
                elif untagged and any(m[1] == port and m[2] == "untagged" for m in members):
                    out("Error: %s is already untagged member in another VLAN\n" % port)
                else:
                    members.append([vid, port, "untagged" if untagged else "tagged"])
                    save(state)
            elif words[:5] == ["sudo", "config", "vlan", "member", "del"]:
                vid, port = int(words[5]), words[6]
                left = [m for m in members if not (m[0] == vid and m[1] == port)]
                if len(left) == len(members):
                    out("Error: %s is not a member of Vlan%d\n" % (port, vid))
                else:
                    state["members"] = left
                    save(state)
            elif cmd == "sudo config save -y":
                record(event="saved")
                out("Running command: /usr/local/bin/sonic-cfggen -d --print-data > /etc/sonic/config_db.json\n")
            else:
                out("-bash: %s: command not found\n" % (words[0] if words else ""))
        except (ValueError, IndexError):
            out("Usage: config vlan member [OPTIONS] COMMAND [ARGS]...\n")
        out(prompt)


# --- Cumulus Linux NVUE: nv set/unset, nv config apply ----------------------

def nvue():
    prompt = "cumulus@switch:mgmt:~$ "
    applied = load()
    pending = json.loads(json.dumps(applied))
    base = "bridge domain br_default"
    out(prompt)
    for line in sys.stdin:
        cmd = line.strip()
        record(cmd=cmd)
        time.sleep(DELAY)
        words = cmd.split()
        try:
            if cmd == "nv config show -o json":
                ifaces = {p: {"bridge": {"domain": {"br_default": d}}} for p, d in load().items()}
                doc = [{"header": {"model": "VX", "nvue-api-version": "nvue_v1", "rev-id": 1.0, "version": "Cumulus Linux 5.9.0"}},
                       {"set": {"interface": ifaces, "system": {"hostname": "switch"}}}]
                out(json.dumps(doc, indent=2) + "\n")
            elif cmd == "nv config apply -y":
                applied = json.loads(json.dumps(pending))
                save(applied)
                out("applied [rev_id: 2]\n")
            elif cmd == "nv config save":
                record(event="saved")
                out("saved [rev_id: 2]\n")
            elif words[:3] == ["nv", "unset", "interface"] and " ".join(words[4:]) == base:
                pending.pop(words[3], None)
            elif words[:3] == ["nv", "set", "interface"] and " ".join(words[4:7]) == base:
                d = pending.setdefault(words[3], {})
                key, value = words[7], words[8]
                if key == "access":
                    d["access"] = vlan_list(value)[0]
                elif key == "vlan":
                    d["vlan"] = {str(v): {} for v in vlan_list(value)}
                elif key == "untagged":
                    d["untagged"] = value if value == "none" else vlan_list(value)[0]
                else:
                    raise ValueError(key)
            else:
                out("Error: unknown command %r\n" % cmd)
        except (ValueError, IndexError) as e:
            out("Error: invalid value %s\n" % e)
        out(prompt)


def flood():
    while True:
        out("x" * 1000 + "\n")


if __name__ == "__main__":
    record(event="login")
    try:
        {"flood": flood, "juniper_junos": junos, "sonic": sonic, "cumulus_nvue": nvue}.get(FAMILY, cisco)()
    except (BrokenPipeError, KeyboardInterrupt):
        pass

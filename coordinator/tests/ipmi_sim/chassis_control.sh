#!/bin/sh
# ipmi_sim `chassis_control` program for the IPMI tests: no QEMU; the power
# state and boot device live in files in $STATE_DIR (passed as the first
# argument), and every request is appended to $STATE_DIR/requests.log.
#   chassis_control.sh <dir> <mc> get power boot ...  -> "parm:value" lines
#   chassis_control.sh <dir> <mc> set parm value ...  -> no output, rc 0
dir=$1; op=$3; shift 3
case "$op" in
  get)
    for p in "$@"; do
      case "$p" in
        power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
        boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
        *) echo "Invalid parameter: $p"; exit 1 ;;
      esac
    done ;;
  set)
    while [ $# -gt 0 ]; do
      p=$1; v=$2; shift 2
      echo "set $p $v" >> "$dir/requests.log"
      case "$p" in
        power) echo "$v" > "$dir/power" ;;
        reset) ;;
        shutdown) echo 0 > "$dir/power" ;;
        boot) echo "$v" > "$dir/boot" ;;
        identify) shift ;;
        *) echo "Invalid parameter: $p"; exit 1 ;;
      esac
    done ;;
  check) exit 1 ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
exit 0

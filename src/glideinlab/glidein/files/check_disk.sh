#!/bin/sh
# glideinlab validation script: the glidein's work dir has at least GLIDEIN_MinDiskMBs MB free.
# Usage: check_disk.sh <glidein_config>; exit 0 = pass, else one line on stdout says why.
config=${1:?usage: check_disk.sh <glidein_config>}

# last value of KEY in glidein_config (later lines override earlier ones)
config_value() {
    grep "^$1 " "$config" | tail -n 1 | cut -d ' ' -f 2-
}

min_mb=$(config_value GLIDEIN_MinDiskMBs)
case "$min_mb" in
    '') min_mb=100 ;;  # glideinlab.defaults.glidein GLIDEIN_MinDiskMBs
    *[!0-9]*)
        echo "check_disk: ignoring GLIDEIN_MinDiskMBs '$min_mb' (not a whole number), using 100" >&2
        min_mb=100 ;;
esac
work_dir=$(config_value GLIDEIN_WORK_DIR)
work_dir=${work_dir:-$(dirname "$config")}

free_kb=$(df -Pk "$work_dir" 2>/dev/null | awk 'NR == 2 { print $4 }')
case "$free_kb" in
    ''|*[!0-9]*)
        echo "check_disk: cannot read the free space of $work_dir"
        exit 1 ;;
esac
free_mb=$((free_kb / 1024))

if [ "$free_mb" -lt "$min_mb" ]; then
    echo "check_disk: only $free_mb MB free in $work_dir, GLIDEIN_MinDiskMBs asks for $min_mb MB"
    exit 1
fi
echo "check_disk: $free_mb MB free in $work_dir (GLIDEIN_MinDiskMBs $min_mb)"

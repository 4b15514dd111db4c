#!/bin/sh
# glideinlab validation script: HTCondor's daemons are installed and runnable on this worker.
# Usage: check_condor.sh <glidein_config>; exit 0 = pass, else one line on stdout says why.
# On success appends "CONDOR_VERSION <x.y.z>" to glidein_config.
config=${1:?usage: check_condor.sh <glidein_config>}

for tool in condor_master condor_startd condor_version; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check_condor: $tool not found in PATH ($PATH)"
        exit 1
    fi
done

# ONLY_ENV: read no config file, so a broken system config cannot fail a version banner.
for daemon in condor_master condor_startd; do
    if ! CONDOR_CONFIG=ONLY_ENV "$daemon" -version >/dev/null 2>&1; then
        echo "check_condor: '$daemon -version' failed: the daemon cannot run here"
        exit 1
    fi
done

if ! banner=$(CONDOR_CONFIG=ONLY_ENV condor_version 2>&1); then
    echo "check_condor: condor_version failed: $(printf '%s\n' "$banner" | head -n 1)"
    exit 1
fi
version=$(printf '%s\n' "$banner" | sed -n 's/^\$CondorVersion: \([0-9][0-9.]*\) .*/\1/p' | head -n 1)
if [ -z "$version" ]; then
    echo "check_condor: no \$CondorVersion line in condor_version's output"
    exit 1
fi

echo "CONDOR_VERSION $version" >> "$config"
echo "check_condor: HTCondor $version"

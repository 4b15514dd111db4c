"""Defaults for the glidein (the pilot program) and for the signed staging areas it downloads from.

Names are upstream's ``condor_vars.lst`` ones where upstream has the knob (``GLIDEIN_Max_Idle``,
``GLIDEIN_Job_Max_Time`` ...), and ``GLIDEIN_``-prefixed glideinlab names otherwise.  Every knob of
:data:`GLIDEIN` may be overridden per glidein by a stage constant or a ``-param_<NAME>`` of the same name
(last wins: main < entry < client < client_group < params).

``glideinlab/glidein/startup.py`` runs on worker nodes without our package, so it carries these numbers
as literals; ``tests/unit/test_glidein_startup.py`` asserts they stay equal to this module.
"""

from __future__ import annotations

from . import Knob, Section

GLIDEIN = Section(
    "glidein",
    "What a glidein does on the worker node; override per glidein with a stage constant or -param_<NAME>.",
    (
        Knob("GLIDEIN_Max_Idle", 1200, "s", "Exit if no job ran on the glidein for this long after HTCondor "
             "started (watched by the glidein; also its STARTD_NOCLAIM_SHUTDOWN)."),
        Knob("GLIDEIN_Max_Tail", 400, "s", "Exit when no job has run for this long after the last job ended "
             "(watched by the glidein: job sandboxes and StartdLog)."),
        Knob("GLIDEIN_Job_Max_Time", 129600, "s", "Longest job the glidein promises to run to completion after "
             "it retires (die = retire + this, unless GLIDEIN_Max_Walltime bounds it)."),
        Knob("GLIDEIN_Retire_Time", 21600, "s", "Stop accepting new jobs this long after start, when "
             "GLIDEIN_Max_Walltime is not set."),
        Knob("GLIDEIN_Retire_Time_Spread", 10, "%", "Retire and die up to this share of the retire time earlier, "
             "at random, so glideins started together do not all retire together."),
        Knob("GLIDEIN_Min_Retire_Time", 600, "s", "A glidein that would retire sooner than this fails validation "
             "(upstream's 600 s floor); the random spread never pushes a glidein below it."),
        Knob("GLIDEIN_Max_Walltime", 0, "s", "Batch walltime of the pilot; when set (> 0), die = walltime - "
             "UPDATE_INTERVAL - GLIDEIN_Graceful_Shutdown and retire = die - GLIDEIN_Job_Max_Time. 0 = not set."),
        Knob("GLIDEIN_Graceful_Shutdown", 120, "s", "SHUTDOWN_GRACEFUL_TIMEOUT: time jobs get to leave once the "
             "glidein shuts down."),
        Knob("GLIDEIN_CPUS", 1, "cores", "Cores of the glidein's partitionable slot (NUM_CPUS; never detected)."),
        Knob("GLIDEIN_MaxMemMBs", 2048, "MB", "Memory of the glidein's slot (MEMORY; never detected)."),
        Knob("GLIDEIN_MinDiskMBs", 100, "MB", "check_disk.sh fails when the work dir has less free space."),
        Knob("GLIDEIN_Failed_Wait", 1199, "s", "Sleep after a failed validation before exiting, so a broken node "
             "does not eat pilots (upstream's 1199 s)."),
        Knob("GLIDEIN_Failed_Wait_Fast", 150, "s", "The same for -v fast and -v check, unless GLIDEIN_Failed_Wait "
             "is given explicitly."),
        Knob("UPDATE_INTERVAL", 370, "s", "Startd update interval; also the slack kept before "
             "GLIDEIN_Max_Walltime (upstream randomises 270-370 s and budgets 370)."),
        Knob("MASTER_UPDATE_INTERVAL", 300, "s", "Master update interval; bounds how long the master lingers "
             "after its startd exited (MASTER.DAEMON_SHUTDOWN is evaluated at updates)."),
        Knob("CLAIM_WORKLIFE", 3600, "s", "How long a claim may be reused for further jobs."),
        Knob("GLIDEIN_Start", "True", "ClassAd", "Factory-wide START clause, AND'ed into START."),
        Knob("GLIDEIN_Entry_Start", "True", "ClassAd", "Entry START clause, AND'ed into START."),
        Knob("GLIDECLIENT_Start", "True", "ClassAd", "Frontend start_expr, AND'ed into START."),
        Knob("GLIDECLIENT_Group_Start", "True", "ClassAd", "Frontend group start_expr, AND'ed into START: "
             "the glidein only runs the requesting group's jobs."),
        Knob("GLIDEIN_TrustDomain", "", "", "TRUST_DOMAIN of the glidein's daemons; empty = the host of the "
             "first collector picked from GLIDEIN_Collector (the user pool's, like its IDTOKEN issuer)."),
        Knob("USE_CCB", False, "", "Register with CCB (GLIDEIN_CCB, else the collector) so schedds reach the "
             "glidein through it; the collector must grant the glidein DAEMON for that."),
        Knob("GLIDEIN_Download_Timeout", 30, "s", "Timeout of one HTTP request to a staging area."),
        Knob("GLIDEIN_Download_Retries", 3, "tries", "Attempts per staged file before validation fails."),
        Knob("GLIDEIN_Script_Timeout", 600, "s", "A validation script running longer is killed and fails."),
        Knob("GLIDEIN_Poll_Interval", 5, "s", "How often the glidein checks on its children (validation "
             "scripts, condor_master) for signals, timeouts and the first job."),
        Knob("GLIDEIN_Kill_Margin", 60, "s", "Slack after the expected end (ToDie + update + graceful, or a "
             "forwarded signal + graceful) before condor_master gets SIGQUIT, and again before SIGKILL."),
        Knob("GLIDEIN_Log_Tail_Lines", 200, "lines", "Lines of each HTCondor log printed to stderr at exit."),
    ),
)

STAGE = Section(
    "glidein.stage",
    "Signed staging areas the factory and frontend write for glideins (glideinlab.glidein.stage).",
    (
        Knob("unreferenced_max_age", 10080, "min", "Cleanup removes staged files no current stage references "
             "once untouched this long; 7 days, the factory's stale idle age, so queued glideins still find "
             "the files their -sign names."),
    ),
)

SECTIONS: tuple[Section, ...] = (GLIDEIN, STAGE)

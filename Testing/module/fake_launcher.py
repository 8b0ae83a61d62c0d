"""A stand-in for Slicer's ``PythonSlicer``, a CTKAppLauncher: it starts the real interpreter as a child and waits.

Like CTKAppLauncher (commontk/AppLauncher ``Base/ctkAppLauncher.cpp``, ``runProcess``: ``QProcess::start`` with
forwarded channels, then the launcher waits for ``finished``), the child stays in the launcher's process group and
writes straight to the launcher's stdout/stderr, and no signal is forwarded to it. With ``--ignore-sigterm`` the
launcher also survives SIGTERM, the harder case for a Cancel that signals only the process it started.

    python fake_launcher.py [--ignore-sigterm] PROGRAM [ARGS...]
"""

import signal
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "--ignore-sigterm":
        args = args[1:]
        # A handler, not SIG_IGN: an ignored disposition would be inherited by the child through exec.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
    child = subprocess.Popen(args)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())

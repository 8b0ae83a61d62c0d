"""Shared pytest settings: torch runs on the CPU with few threads so parallel suites stay fast on 2 cores."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")

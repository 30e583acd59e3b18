"""Spins at import time (a pure-Python hang: the watchdog can interrupt it)."""
import time

while True:
    time.sleep(0.001)

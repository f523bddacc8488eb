"""``python -m scheduler.cli`` is ``gnomon``."""

from scheduler.cli import main

main()

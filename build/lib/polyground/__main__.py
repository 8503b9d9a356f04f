"""`python -m polyground` runs the CLI."""
import sys

from polyground.cli import main

sys.exit(main())

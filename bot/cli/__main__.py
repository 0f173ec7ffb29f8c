"""`python -m bot.cli`: the same as the `huzhu` command."""
import sys

from bot.cli import main

sys.exit(main())

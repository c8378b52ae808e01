import sys

from asynclm.cli import main

sys.exit(main())

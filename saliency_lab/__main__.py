import sys

from saliency_lab.cli import main

sys.exit(main())

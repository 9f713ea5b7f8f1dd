import sys

from services.check.main import main

sys.exit(main(sys.argv[1:]))

import sys

from services.all.main import main

sys.exit(main(sys.argv[1:]))

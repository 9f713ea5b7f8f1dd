import sys

from services.relay.main import main

sys.exit(main(sys.argv[1:]))

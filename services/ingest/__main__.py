import sys

from services.ingest.main import main

sys.exit(main(sys.argv[1:]))

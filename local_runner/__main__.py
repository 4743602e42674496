import logging
import os
import sys

from .cli import main

status = main()
# Everything is written and closed: skip the interpreter's teardown of moto's and boto's modules (most of a second).
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)

"""Make `ansible_collections.autoglm.fleet` importable for the tests, from a plain checkout.

`make setup` links the checkout as .cache/collections/ansible_collections/autoglm/fleet; this does
the same when pytest runs on its own, then puts .cache/collections first on sys.path.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "autoglm", "fleet")

if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.join("..", "..", "..", ".."), LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

"""Stand-in program for the seed mesh's memcached service: reports the configuration it got."""

import os

print(f"memcached: port {os.environ.get('MEMCACHED_PORT')}, "
      f"{os.environ.get('MEMCACHED_MEMORY_MB')} MB", flush=True)

"""Stand-in program for the seed mesh's database service: reports its user and host."""

import os

# lower-case names as the seed's mesh defines them
user = os.environ.get("database_user")  # noqa: SIM112
host = os.environ.get("database_host")  # noqa: SIM112
print(f"database user {user} on {host}", flush=True)

#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d):
# one login role and one database per service with a database, each role owning only its
# own database, all with the password of POSTGRES_PASSWORD (compose.yaml).
set -eu
for service in users inventory payments shipping orders analytics notifications; do
  psql -v ON_ERROR_STOP=1 -U postgres -v role="$service" -v password="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done

#!/bin/sh
# First start: a cluster whose network logins need a password, the role POSTGRES_USER
# with POSTGRES_PASSWORD, and its database POSTGRES_DB. Then PostgreSQL in the
# foreground, listening on every address.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
USER_NAME=${POSTGRES_USER:-sched}
DB=${POSTGRES_DB:-sched}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  "$BIN/initdb" -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$pwfile" >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/tmp" \
    -w start >/dev/null
  "$BIN/psql" -h /tmp -U postgres -v ON_ERROR_STOP=1 -q -v user="$USER_NAME" \
    -v password="$POSTGRES_PASSWORD" -v db="$DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'user', :'password')
WHERE :'user' <> 'postgres' \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') \gexec
SQL
  "$BIN/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp

#!/usr/bin/env bash
# Pre-release only: regenerate the initial migration from schedd/models.py.
# Once a release has shipped, add a new revision instead (alembic revision --autogenerate).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f migrations/versions/0001_initial_schema.py
DATABASE_URL="sqlite:///$tmp/regen.db" .venv/bin/alembic revision --autogenerate \
  --rev-id 0001 -m "initial schema" >/dev/null
sed -i 's/astext_type=Text()/astext_type=sa.Text()/g; /^Create Date:/d' \
  migrations/versions/0001_initial_schema.py
echo "regenerated migrations/versions/0001_initial_schema.py"

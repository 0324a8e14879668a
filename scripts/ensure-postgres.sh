#!/usr/bin/env bash
# The control-plane tests run against PostgreSQL too. They reuse a server on
# 127.0.0.1:5432 when one answers, or start a throwaway one with initdb/pg_ctl
# (tests/service/conftest.py). This makes sure one of the two is possible on a fresh
# machine: if neither a server nor the binaries are here, install Debian's packages.
set -u
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
  exit 0
fi
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: installing Debian's postgresql for the test suite" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || {
    echo "ensure-postgres: could not install postgresql; the PostgreSQL tests will fail and say why" >&2
  }
  exit 0
fi
echo "ensure-postgres: no PostgreSQL server or binaries; set GIGAFACTORY_TEST_PG or install postgresql" >&2
exit 0

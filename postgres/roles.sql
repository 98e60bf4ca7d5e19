-- A domain's two login roles (docs/security.md, "PostgreSQL: a role per service"), created
-- when missing, run by a superuser with psql variables domain, owner_password and
-- service_password (scripts/infra pg-roles; the test harness):
--   <domain>_owner    owns the database and everything in it: loads the seed, applies the
--                     migrations, grants the service role (common/sql/runtime_grants.sql);
--   <domain>_service  what the service runs as: rows of its tables, its functions, no DDL.
-- Neither is a superuser, nor may create databases or roles. Roles are the server's (a
-- standby of pg_auto_failover has them too). A password is set only at creation: rotating
-- one is ALTER ROLE ... PASSWORD (docs/operations.md).
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'domain' || '_owner', :'owner_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'domain' || '_owner') \gexec
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'domain' || '_service', :'service_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'domain' || '_service') \gexec

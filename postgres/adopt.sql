-- Hands a database loaded before the roles existed (by the superuser: every object owned by
-- postgres) to its owner role, psql variable owner; run by a superuser in that database
-- (scripts/infra pg-load, on a database it leaves as it is). Idempotent: nothing to do once
-- the owner owns it all.
SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'owner')
WHERE (SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()) <> :'owner' \gexec
SELECT format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
              c.oid::regclass, :'owner')
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
   AND c.relowner::regrole::text <> :'owner'
   -- a sequence owned by a column goes with its table
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a'))
\gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner')
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proowner::regrole::text <> :'owner' \gexec

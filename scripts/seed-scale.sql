-- Seeds a tenant of the scale work's shape straight into a migrated directory
-- database, with set-based SQL (far faster than through the API, for measuring
-- the authorization service at a million users):
--
--   psql "$DATABASE_URL" -v users=1000000 -v groups=100000 -v manifest=tenant.json -f scripts/seed-scale.sql
--
-- It writes the load tool's manifest (`cohort-bench run --manifest`) to the file
-- named by `manifest`.
--
-- The same shape as `cohort-bench seed`: organizations of 100 groups, each a tree
-- four wide (group k's parent is group (k - 1) / 4 of its block); users with the
-- bench's roles (1 in 200 an LMS admin, 1 in 50 a group administrator, 1 in 10
-- an LMS author); three memberships per user in pseudo-random groups; an
-- inherited role on one group in ten (LMS VALIDATOR and LMS GROUP_ADMINISTRATOR
-- in turn); an administrator on every organization and level-2 group. The last
-- line it prints is the tenant id.

\set ON_ERROR_STOP on
\set QUIET on
SELECT gen_random_uuid() AS tenant \gset

BEGIN;
INSERT INTO tenants (id, display_name, revision, create_time) VALUES (:'tenant', 'Scale', 2, now());

CREATE TEMP TABLE seed_groups ON COMMIT DROP AS
    SELECT n, gen_random_uuid() AS id FROM generate_series(0, :groups - 1) AS n;
CREATE INDEX ON seed_groups (n);
CREATE TEMP TABLE seed_users ON COMMIT DROP AS
    SELECT n, gen_random_uuid() AS id FROM generate_series(0, :users - 1) AS n;
CREATE INDEX ON seed_users (n);
ANALYZE seed_groups;
ANALYZE seed_users;

-- Parents come first (a parent's number is below its children's).
INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, is_organization, inherited_roles,
                    create_time, update_time, revision)
SELECT :'tenant', g.id, p.id, 'Group ' || g.n, 'group ' || g.n, g.n % 100 = 0,
       CASE g.n % 20 WHEN 3 THEN 'LMS_VALIDATOR' WHEN 13 THEN 'LMS_GROUP_ADMINISTRATOR' ELSE '' END,
       now(), now(), 1
FROM seed_groups g
LEFT JOIN seed_groups p ON g.n % 100 > 0 AND p.n = (g.n / 100) * 100 + (g.n % 100 - 1) / 4
ORDER BY g.n;

INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, suspended,
                   create_time, update_time, revision)
SELECT :'tenant', id, 'User ' || n, 'user' || n || '@scale.test', 'user' || n || '@scale.test',
       'user ' || n || chr(10) || 'user' || n || '@scale.test',
       CASE
           WHEN n % 200 = 0 THEN 'GLOBAL_ADMIN_ADMIN,LMS_ADMIN,LMS_USER'
           WHEN n % 200 % 50 = 1 THEN 'GLOBAL_ADMIN_GROUP_ADMINISTRATOR,LMS_GROUP_ADMINISTRATOR,LMS_USER'
           WHEN n % 200 % 10 = 2 THEN 'GLOBAL_ADMIN_USER,LMS_AUTHOR,LMS_USER'
           ELSE 'GLOBAL_ADMIN_USER,LMS_USER,SHARE_CONSUMER'
       END,
       false, now(), now(), 1
FROM seed_users;

INSERT INTO user_roles (tenant_id, user_id, role)
SELECT tenant_id, id, unnest(string_to_array(roles, ',')) FROM users WHERE tenant_id = :'tenant';

INSERT INTO memberships (tenant_id, group_id, user_id, join_revision, join_time)
SELECT :'tenant', g.id, u.id, 1 + k, now()
FROM seed_users u
CROSS JOIN generate_series(0, 2) AS k
JOIN seed_groups g ON g.n = abs(hashint8(u.n * 3 + k)) % :groups
ON CONFLICT DO NOTHING;

INSERT INTO group_administrators (tenant_id, group_id, user_id)
SELECT :'tenant', g.id, a.id
FROM seed_groups g
JOIN seed_users a ON a.n = (abs(hashint8(g.n)) % (:users / 200)) * 200 + 1
WHERE g.n % 100 <= 4;

UPDATE groups g SET subgroup_count = c.n FROM
    (SELECT parent_id, count(*) AS n FROM groups WHERE tenant_id = :'tenant' AND parent_id IS NOT NULL GROUP BY parent_id) c
WHERE g.tenant_id = :'tenant' AND g.id = c.parent_id;
UPDATE groups g SET member_count = c.n FROM
    (SELECT group_id, count(*) AS n FROM memberships WHERE tenant_id = :'tenant' GROUP BY group_id) c
WHERE g.tenant_id = :'tenant' AND g.id = c.group_id;
UPDATE groups g SET administrator_count = 1 FROM group_administrators a
WHERE a.tenant_id = :'tenant' AND g.tenant_id = a.tenant_id AND g.id = a.group_id;
COMMIT;

ANALYZE;

-- The manifest: every user, the groups by level, the administrators.
\pset tuples_only on
\pset format unaligned
SELECT json_build_object(
    'tenant_id', :'tenant',
    'shape', json_build_object('users', :users, 'groups', :groups, 'organizations', :groups / 100,
                               'memberships_per_user', 3, 'inherited_every', 10),
    'users', (SELECT json_agg(id ORDER BY n) FROM (
                 SELECT id, substring(display_name FROM 6)::bigint AS n FROM users WHERE tenant_id = :'tenant') u),
    'levels', (SELECT json_agg(ids ORDER BY level) FROM (
                 SELECT level, json_agg(id) AS ids FROM (
                     SELECT id, CASE WHEN k = 0 THEN 1 WHEN k <= 4 THEN 2 WHEN k <= 20 THEN 3 ELSE 4 END AS level
                     FROM (SELECT id, substring(display_name FROM 7)::bigint % 100 AS k
                           FROM groups WHERE tenant_id = :'tenant') g) l
                 GROUP BY level) levels),
    'administrators', (SELECT json_agg(DISTINCT user_id) FROM group_administrators WHERE tenant_id = :'tenant'),
    'revision', 2)
\g :manifest
\echo :tenant

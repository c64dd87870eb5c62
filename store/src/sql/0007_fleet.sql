-- pantau store, version 7: a fleet of nodes on one database. Cameras live here (from every
-- node's config file and from the API); each runs on one node through a lease its node renews;
-- the lease log keeps every generation's interval, and a trigger refuses the rows a node writes
-- for a camera at a time it did not hold it (a stale node's late writes).

create table {schema}.fleet_nodes (
  id text primary key,
  groups text[] not null default '{}',
  capacity int not null default 0,
  api_url text,
  started_at timestamptz not null,
  last_seen timestamptz not null,
  health jsonb not null default '{}'::jsonb
);

create table {schema}.fleet_cameras (
  id text primary key,
  config jsonb not null,
  -- 'config': from a node's config file (updated from config files at start);
  -- 'api': added or changed from the console (config files no longer change it).
  source text not null check (source in ('config', 'api')),
  removed boolean not null default false,
  version bigint not null default 1,
  updated_at timestamptz not null default now()
);

create table {schema}.fleet_leases (
  camera text primary key,
  node text not null,
  generation bigint not null,
  expires_at timestamptz not null,
  status jsonb
);

create table {schema}.fleet_lease_log (
  camera text not null,
  generation bigint not null,
  node text not null,
  acquired_at timestamptz not null,
  valid_until timestamptz not null,
  -- null while held; 'released' (handed back) or 'expired' (taken after its expiry).
  ended text,
  primary key (camera, generation)
);
create index on {schema}.fleet_lease_log (camera, node, valid_until);

-- A node's store writes set `pantau.fleet_node` in their transaction. A row of a camera that
-- has been leased is refused unless that node held the camera at the row's time (events: from
-- 30 s before the lease, for camera clocks; counts: a day before, as a count period starts
-- before the camera was taken).
create function {schema}.fleet_fence() returns trigger language plpgsql as $fence$
declare
  me text := nullif(current_setting('pantau.fleet_node', true), '');
  slack interval := case when tg_table_name = 'counts' then interval '1 day' else interval '30 seconds' end;
begin
  if me is null then
    return new;
  end if;
  if not exists (select 1 from {schema}.fleet_lease_log g where g.camera = new.camera) then
    return new;
  end if;
  if exists (select 1 from {schema}.fleet_lease_log g
             where g.camera = new.camera and g.node = me
               and new.at >= g.acquired_at - slack
               and new.at <= g.valid_until + interval '2 seconds') then
    return new;
  end if;
  raise exception using
    errcode = '23F01',
    message = format('camera %s was not leased to node %s at %s: a stale node''s write is refused',
                     new.camera, me, new.at);
end
$fence$;

create trigger fleet_fence before insert on {schema}.events
  for each row execute function {schema}.fleet_fence();
create trigger fleet_fence before insert on {schema}.counts
  for each row execute function {schema}.fleet_fence();

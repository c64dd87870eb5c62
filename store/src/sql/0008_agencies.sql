-- pantau store, version 8: agencies (command centers) sharing one fleet. A user belongs to
-- agencies (none: sees every camera); an incident handed over to another agency lists it, so
-- the receiving agency sees it beside the cameras of its own groups.

alter table {schema}.users add column agencies text[] not null default '{}';
alter table {schema}.incidents add column handed_to text[] not null default '{}';
create index on {schema}.incidents using gin (handed_to);

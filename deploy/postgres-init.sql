-- Two databases on one server: Airflow's metadata and figalign's provenance store.
-- Airflow 3 tasks cannot open sessions on the metadata DB, so the store is separate.
CREATE DATABASE figalign;

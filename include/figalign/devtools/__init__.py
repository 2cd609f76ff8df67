"""Developer tools used by the Makefile: throwaway databases, Airflow standalone."""

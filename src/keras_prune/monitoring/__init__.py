"""Monitoring: event files, statistics, reports, tables and plots."""

"""The safety officers' dashboard: server-rendered report pages with plotly.js charts."""

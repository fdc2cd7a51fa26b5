"""The numbers kdkit reports: quality and fidelity metrics, cost (size, latency, throughput) and the spread of
timings.
"""

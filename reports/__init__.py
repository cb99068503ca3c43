"""Self-contained HTML reports: statistics, anomalies, drift and shadow replay.

Every chart is drawn by matplotlib as inline SVG and every style and script is inline, so a
report opens anywhere (a browser, a notebook, an offline cluster) and fetches nothing. The
page carries a Content-Security-Policy of `default-src 'none'` plus inline scripts and
styles, so a browser would refuse any fetch even if one crept in.
"""

"""Snapshots of etcd's data in S3: taken through etcd's snapshot API, streamed to S3 in parts, verified, pruned
by retention tiers, and downloaded and restored into a new cluster's data directory.

``naming`` and ``retention`` decide (pure); ``stream`` reads etcd, ``store`` reads and writes S3, ``take`` and
``restore`` put them together. Nothing here is imported on the coordinator's cold start unless snapshots are on.
"""

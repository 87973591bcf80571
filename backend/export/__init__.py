"""Corrected Label Studio annotations -> NExT-Chat stage-3 (RES) training data.

Modules: annotations (results -> pixel regions), pairing (rectangle text -> mask regions), stage3
(records, images), build (one annotation -> stored entry; batch export), store (the directory,
atomic writes), sources (local / Label Studio images), project (export through the API), live
(webhook mode), check (read back like the trainer), cli (`export`, `check-stage3`).
"""

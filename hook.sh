#!/usr/bin/env bash
# claude-failover guard (placeholder until the guard lands: allows everything)
CF_BAKED_MODE=enforce
CF_BAKED_EVENTS=''
exit 0

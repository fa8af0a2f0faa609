#!/bin/bash
# service-mode agent for the idle benchmark: does nothing, forever.
exec sleep 2147483647

#!/bin/bash
# exec-mode agent for the benchmark: read the task JSON on stdin, print an empty result.
cat > /dev/null
printf '{}\n'

#!/bin/bash
# Starts the multipart example's sampler and sink as FairMQ's fairmq-start-ex-multipart.sh
# does, but in this terminal instead of two xterms, hence with --control static (both exit
# once done rather than wait for keyboard commands): the sampler sends 5 multipart messages
# over tcp://127.0.0.1:5555, the sink leaves RUNNING after the last (stop flag 1).
# Usage: fairmq-start-ex-multipart.sh [zeromq|shmem]. EX_BIN_DIR defaults to the workspace's
# target/debug (cargo build -p fairmq-example-multipart -p fairmq-devices).

transport="zeromq"
if [[ $1 =~ ^[a-z]+$ ]]; then
    transport=$1
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${EX_BIN_DIR:-$here/../../target/debug}"
session="$("$bin/fairmq-uuid-gen" -h 2>/dev/null || echo "multipart$$")"

"$bin/fairmq-ex-multipart-sampler" --id sampler1 --transport "$transport" --session "$session" --control static \
    --channel-config name=data,type=push,method=connect,rateLogging=0,address=tcp://127.0.0.1:5555 &
sampler=$!

"$bin/fairmq-ex-multipart-sink" --id sink1 --transport "$transport" --session "$session" --control static \
    --channel-config name=data,type=pull,method=bind,rateLogging=0,address=tcp://127.0.0.1:5555 &
sink=$!

trap 'kill -INT $sampler $sink 2>/dev/null' INT TERM
wait $sampler
wait $sink

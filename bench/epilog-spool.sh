# shellcheck shell=bash
# Sourced by the epilog benches (epilog-wall, epilog-logs, epilog-faults): what the SPANK plugin
# leaves in a node's spool for one job, so the epilog has a realistic job to record.

# spool_items SPOOL ID WORK [START]: the plugin's four items for job ID (the batch step and
# step 0, each a start and an end), with WORK as the steps' cwd; the steps start at START
# (default: ten seconds ago) and end now.
spool_items() {
    local spool=$1 id=$2 work=$3 start=${4:-} d now step sid
    d=$spool/jobs/$id
    now=$(printf '%(%s)T' -1)
    start=${start:-$((now - 10))}
    mkdir -p "$d"
    for step in batch 0; do
        sid=$step
        [[ $step == batch ]] && sid=4294967291
        printf '{"kind":"step_start","cluster":"bench","job_id":%s,"step_id":%s,"node":"n1","node_id":0,"uid":65534,"gid":65534,"user":"nobody","nnodes":1,"local_tasks":1,"total_tasks":1,"ncpus":1,"argv":["/bin/true"],"cwd":"%s","account":"bench","partition":"debug","env":{"OMP_NUM_THREADS":"1"},"start":%s,"slurm_version":"22.05.8"}' \
            "$id" "$sid" "$work" "$start" >"$d/$step.start.json"
        printf '{"kind":"step_end","cluster":"bench","job_id":%s,"step_id":%s,"node":"n1","start":%s,"end":%s,"tasks":[{"task_id":0,"global_rank":0,"raw_status":0,"status":{"code":0,"signal":0},"time":%s}],"cpu_user_s":1.5,"cpu_sys_s":0.1,"max_rss_kib":1024}' \
            "$id" "$sid" "$start" "$now" "$now" >"$d/$step.end.json"
    done
}

# job_output WORK ID: the job's stdout (slurm-ID.out) in WORK, readable by the job's user.
job_output() {
    printf 'hello from job %s\nstep done\n' "$2" >"$1/slurm-$2.out"
    chmod 0644 "$1/slurm-$2.out"
}

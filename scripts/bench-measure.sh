# Shared by the benchmark scripts: timing of a command with its peak memory and the load that
# other processes put on the machine meanwhile. The caller sets $work, $runs and $output_ext.

rustc_running() {
  if pgrep -x rustc > /dev/null; then echo yes; else echo no; fi
}

# Prints the CPU time spent so far by every process on the machine, in clock ticks: user, nice,
# system, irq, softirq and steal (time the hypervisor gave to other machines).
busy_ticks() {
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# label, command...: runs the command $runs times, keeps its output in $work/label.$output_ext and prints
# "label best_wall_seconds max_peak_rss_kib rustc_running other_load_percent". The other load is
# the CPU time that other processes used during the runs, in percent of one core over their
# total wall time. For runs of a few hundredths of a second, the script's own work between runs
# dominates it.
measure() {
  local label=$1; shift
  local best="" rss=0 busy start own=0 total=0 other
  busy=$(rustc_running)
  start=$(busy_ticks)
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M %U %S" -o "$work/time.txt" "$@" > "$work/$label.$output_ext" 2> "$work/stderr.txt" \
      || { cat "$work/stderr.txt" >&2; exit 1; }
    read -r wall peak user system < "$work/time.txt"
    best=$(awk -v a="$best" -v b="$wall" 'BEGIN { print (a == "" || b < a) ? b : a }')
    rss=$(( peak > rss ? peak : rss ))
    own=$(awk -v a="$own" -v b="$user" -v c="$system" 'BEGIN { print a + b + c }')
    total=$(awk -v a="$total" -v b="$wall" 'BEGIN { print a + b }')
  done
  [ "$(rustc_running)" = yes ] && busy=yes
  other=$(awk -v ticks="$(( $(busy_ticks) - start ))" -v hz="$(getconf CLK_TCK)" -v own="$own" -v total="$total" \
    'BEGIN { other = ticks / hz - own; printf "%.0f", 100 * (other > 0 ? other : 0) / total }')
  echo "$label $best $rss $busy $other"
}

// The wrapper every task and command of the process driver starts as, so none of its code runs outside its cgroup.

/**
 * The task starts as this wrapper, already as the app's user, and waits on fd 3 until the agent has put its pid in
 * the task's cgroup; only then does it run the app's command (exec: same pid). So no process of the app ever runs
 * outside the cgroup, without giving the app's user write access to any cgroup file. A wrapper whose agent died
 * before saying "go" exits without running anything.
 */
export const GATE = 'IFS= read -r __enjin_gate <&3; exec 3<&-; [ "$__enjin_gate" = go ] || exit 125; unset __enjin_gate; exec sh -c "$1"';

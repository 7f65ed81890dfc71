#!/usr/bin/env bash
# shellcheck disable=SC2016 # '$(' and backticks are searched for as text on purpose
# claude-failover hook: the guard for agents that run with --dangerously-skip-permissions,
# and the reporter of session events for the daemon.
#
# Deployed by claude-failover as .claude/hooks/claude-failover.sh (mode 0555) and
# registered in .claude/settings.json. Self-contained: bash 4.2+ and coreutils only.
#
#   PreToolUse (Bash|Edit|Write|MultiEdit|NotebookEdit)
#       block: exit 2, one line on stderr (what, which rule, what to do instead)
#       warn:  exit 0, recorded          allow: exit 0, nothing on stdout
#   ConfigChange   refuse mid-session changes to project/local settings
#   SessionStart, Stop, StopFailure, Notification, SessionEnd
#       one event file for the daemon when CLAUDE_FAILOVER_EVENTS and
#       CLAUDE_FAILOVER_SESSION (or TMUX_PANE) are set; always exit 0
#
# The next two lines are rewritten by the deployer; keep each alone on its line.
CF_BAKED_MODE=enforce
CF_BAKED_EVENTS=''

# bash older than 4.2 cannot run the guard: refuse tool calls, never block anything else.
if [ -z "${BASH_VERSINFO-}" ] || [ "${BASH_VERSINFO[0]}" -lt 4 ] ||
	{ [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -lt 2 ]; }; then
	cf_old=$(cat 2>/dev/null)
	case $cf_old in
	*'"PreToolUse"'* | *'"ConfigChange"'* | *'"tool_name"'*)
		echo "claude-failover guard: needs bash 4.2 or newer (found ${BASH_VERSION-unknown}) [guard-error]: the call is blocked. Instead: install a newer bash first in PATH." >&2
		exit 2
		;;
	esac
	exit 0
fi

LC_ALL=C
set -f
shopt -u patsub_replacement 2>/dev/null
shopt -u nocasematch extglob 2>/dev/null

CF_PHASE=guard # guard: failures block; event: failures allow
CF_MODE=$CF_BAKED_MODE
case $CF_MODE in enforce | learn | off) ;; *) CF_MODE=enforce ;; esac
CF_EVDIR=${CLAUDE_FAILOVER_EVENTS:-$CF_BAKED_EVENTS}

# Fail closed: any unexpected exit (an unset variable, a bash error) of the guard blocks.
# shellcheck disable=SC2317 # runs from the EXIT trap
cf_on_exit() {
	local rc=$?
	if ((rc != 0 && rc != 2)); then
		if [[ $CF_PHASE == guard && $CF_MODE != off ]]; then
			echo "claude-failover guard: internal error (status $rc) while checking this call [guard-error]: blocked to be safe. Instead: retry, or split the command into simpler ones." >&2
			exit 2
		fi
		exit 0
	fi
}
trap cf_on_exit EXIT

# ---------------------------------------------------------------- state
CF_IN=''
J_OK=0 J_EVENT='' J_TOOL='' J_SID='' J_CWD='' J_SOURCE='' J_FILE=''
T_CMD='' T_HASCMD=0 T_PATH='' T_TEXT=''
CF_RULE='' CF_MSG='' CF_WRULE='' CF_WMSG='' CF_DETAIL='' CF_RAW='' CF_PRAW=''
CF_HOME=${HOME:-/nonexistent-home}
[[ $CF_HOME == / ]] || CF_HOME=${CF_HOME%/}
CF_CWD='' CF_PROJ='' CF_CMD='' CF_EV=''
CF_RE_DAH='disableAllHooks[^A-Za-z0-9,}]{0,16}true'
# The budget: a Bash command longer than CF_MAXCMD is not analysed, and the analysis
# gives up (and blocks) after CF_BUDGET microseconds of CPU time, or CF_WALL of wall
# time on a loaded machine. A hook that outlives its timeout (10 s) lets the call
# through, so slow must mean blocked.
CF_MAXCMD=65536 CF_BUDGET=500000 CF_WALL=2000000 CF_TICK=0 CF_OVER=0
CF_T0=${EPOCHREALTIME-}
CF_T0=${CF_T0/[.,]/}

# ---------------------------------------------------------------- JSON in
# cf_json TEXT: a small JSON reader. Sets J_OK=1 when TEXT is one well-formed object,
# and the fields the guard needs (raw, still escaped: see cf_jdec). Escaped quotes and
# backslashes become \x02 and \x01 first, so every remaining " delimits a string.
cf_json() {
	local s=$1 st str d=0 expect=v i c k np
	local -a K=() T=() P=()
	J_OK=0
	[[ $s =~ ^[[:space:]]*\{ ]] || return 1
	if [[ $s == *\\* ]]; then
		cf_pairs "$s"
		s=$REPLY
	fi
	local IFS='"'
	# shellcheck disable=SC2206 # split on quotes on purpose; globbing is off (set -f)
	P=($s)
	np=${#P[@]}
	for ((k = 0; k < np; k += 2)); do
		st=${P[k]}
		case $st in
		:) expect=v ;;
		,) if [[ ${T[d]} == o ]]; then expect=k; else expect=v; fi ;;
		*)
			[[ $st == *[[:space:]]* ]] && st=${st//[[:space:]]/}
			for ((i = 0; i < ${#st}; i++)); do
				c=${st:i:1}
				case $c in
				'{')
					((d++))
					T[d]=o K[d]='' expect=k
					;;
				'[')
					((d++))
					T[d]=a expect=v
					;;
				'}' | ']')
					((d--))
					((d < 0)) && return 1
					expect=x
					;;
				:) expect=v ;;
				,) if [[ ${T[d]} == o ]]; then expect=k; else expect=v; fi ;;
				[0-9a-z.+-] | E) expect=x ;;
				*) return 1 ;;
				esac
			done
			;;
		esac
		((k + 1 < np)) || break
		((d > 0)) || return 1
		str=${P[k + 1]}
		if [[ $expect == k ]]; then
			K[d]=$str
			expect=c
			continue
		fi
		[[ $expect == v ]] || return 1
		expect=x
		if ((d == 1)); then
			case ${K[1]} in
			hook_event_name) J_EVENT=$str ;;
			tool_name) J_TOOL=$str ;;
			session_id) J_SID=$str ;;
			cwd) J_CWD=$str ;;
			source) J_SOURCE=$str ;;
			file_path) J_FILE=$str ;;
			esac
		elif [[ ${K[1]} == tool_input && ${T[d]} == o ]]; then
			if ((d == 2)); then
				case ${K[2]} in
				command) T_CMD=$str T_HASCMD=1 ;;
				file_path | notebook_path) T_PATH=$str ;;
				content | new_string | new_source) T_TEXT+=$str$'\n' ;;
				esac
			elif [[ ${K[2]} == edits && ${K[d]} == new_string ]]; then
				T_TEXT+=$str$'\n'
			fi
		fi
	done
	((d == 0 && np % 2 == 1)) || return 1
	J_OK=1
}

# cf_pairs TEXT -> REPLY: TEXT with \\ as \x01 and \" as \x02. Long texts go in 2 KB
# pieces: bash's ${s//pat/rep} slows down with the square of the matches.
cf_pairs() {
	local s=$1 c out='' carry=''
	if ((${#s} <= 16384)); then
		s=${s//\\\\/$'\x01'}
		REPLY=${s//\\\"/$'\x02'}
		return
	fi
	while IFS= read -r -d '' -N 2048 c || [[ -n $c ]]; do
		c=$carry$c
		c=${c//\\\\/$'\x01'}
		c=${c//\\\"/$'\x02'}
		carry=''
		if [[ $c == *\\ ]]; then
			carry=\\
			c=${c%?}
		fi
		out+=$c
	done <<<"$s"
	out+=$carry
	REPLY=${out%$'\n'} # the here-string's newline
	((${#REPLY})) && return
	s=${s//\\\\/$'\x01'} # no here-string (no writable TMPDIR): the slow way
	REPLY=${s//\\\"/$'\x02'}
}

# cf_utf8 CODEPOINT -> REPLY (the UTF-8 bytes)
cf_utf8() {
	local c=$1 f
	if ((c < 0x80)); then
		printf -v f '\\x%02x' "$c"
	elif ((c < 0x800)); then
		printf -v f '\\x%02x\\x%02x' $((0xC0 | c >> 6)) $((0x80 | (c & 0x3F)))
	elif ((c < 0x10000)); then
		printf -v f '\\x%02x\\x%02x\\x%02x' $((0xE0 | c >> 12)) $((0x80 | ((c >> 6) & 0x3F))) $((0x80 | (c & 0x3F)))
	else
		printf -v f '\\x%02x\\x%02x\\x%02x\\x%02x' $((0xF0 | c >> 18)) $((0x80 | ((c >> 12) & 0x3F))) $((0x80 | ((c >> 6) & 0x3F))) $((0x80 | (c & 0x3F)))
	fi
	printf -v REPLY '%b' "$f"
}

# cf_jdec RAW -> REPLY: the value of a JSON string body as read by cf_json. A long one
# is decoded in pieces (see cf_pairs), each cut before an escape it would split.
cf_jdec() {
	if ((${#1} <= 16384)) || [[ $1 != *[$'\\\x01\x02']* ]]; then
		cf_jdec1 "$1"
		return
	fi
	local c out='' carry='' x y
	while IFS= read -r -d '' -N 2048 c || [[ -n $c ]]; do
		c=$carry$c
		carry=''
		x=$c
		((${#c} > 5)) && x=${c: -5}
		if [[ $x == *\\* ]]; then
			y=\\${x##*\\}
			if [[ $y == \\ || $y == \\u* ]]; then
				carry=$y
				c=${c:0:${#c}-${#y}}
			fi
		fi
		cf_jdec1 "$c"
		out+=$REPLY
	done <<<"$1"
	cf_jdec1 "$carry"
	out+=$REPLY
	REPLY=${out%$'\n'}
}

cf_jdec1() {
	local v=$1 hex cp lo re='\\u([0-9a-fA-F]{4})' re2
	if [[ $v == *\\* ]]; then
		v=${v//\\n/$'\n'}
		v=${v//\\t/$'\t'}
		v=${v//\\r/$'\r'}
		v=${v//\\\//\/}
		v=${v//\\b/$'\b'}
		v=${v//\\f/$'\f'}
		while [[ $v =~ $re ]]; do
			hex=${BASH_REMATCH[1]}
			cp=$((16#$hex))
			re2='\\u'$hex'\\u([dD][c-fC-F][0-9a-fA-F]{2})'
			if ((cp >= 0xD800 && cp <= 0xDBFF)) && [[ $v =~ $re2 ]]; then
				lo=${BASH_REMATCH[1]}
				cf_utf8 $((0x10000 + ((cp - 0xD800) << 10) + (16#$lo - 0xDC00)))
				v=${v//\\u$hex\\u$lo/$REPLY}
			else
				if ((cp >= 0xD800 && cp <= 0xDFFF)) || ((cp < 0x20 && cp != 9 && cp != 10 && cp != 13)); then
					REPLY='?'
				elif ((cp == 0x5C)); then
					REPLY=$'\x01'
				elif ((cp == 0x22)); then
					REPLY=$'\x02'
				else
					cf_utf8 "$cp"
				fi
				v=${v//\\u$hex/$REPLY}
			fi
		done
	fi
	if [[ $v == *[$'\x01\x02']* ]]; then
		v=${v//$'\x01'/\\}
		v=${v//$'\x02'/\"}
	fi
	REPLY=$v
}

# ---------------------------------------------------------------- JSON out
# cf_jesc TEXT -> REPLY: TEXT as the body of a JSON string.
cf_jesc() {
	local s=$1 i h ch
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	if [[ $s == *[[:cntrl:]]* ]]; then
		s=${s//$'\n'/\\n}
		s=${s//$'\t'/\\t}
		s=${s//$'\r'/\\r}
		if [[ $s == *[[:cntrl:]]* ]]; then
			for ((i = 1; i < 32; i++)); do
				printf -v h '%02x' "$i"
				printf -v ch '%b' "\\x$h"
				s=${s//$ch/\\u00$h}
			done
			s=${s//$'\x7f'/\\u007f}
		fi
	fi
	REPLY=$s
}

# cf_cut TEXT MAX -> REPLY: at most MAX bytes, never ending inside a UTF-8 character.
cf_cut() {
	local s=$1 n=$2 k b
	if ((${#s} <= n)); then
		REPLY=$s
		return
	fi
	s=${s:0:n}
	for ((k = 1; k <= 4 && k <= ${#s}; k++)); do
		b=${s: -k:1}
		if [[ $b == [$'\x80'-$'\xbf'] ]]; then
			continue
		fi
		if [[ $b == [$'\xc0'-$'\xff'] ]]; then
			# a lead byte: keep the character only if it is complete
			if { [[ $b == [$'\xc0'-$'\xdf'] ]] && ((k == 2)); } ||
				{ [[ $b == [$'\xe0'-$'\xef'] ]] && ((k == 3)); } ||
				{ [[ $b == [$'\xf0'-$'\xf7'] ]] && ((k == 4)); }; then
				break
			fi
			s=${s:0:${#s}-k}
		fi
		break
	done
	REPLY=$s
}

cf_now_ms() {
	if [[ -n ${EPOCHREALTIME-} ]]; then
		REPLY=${EPOCHREALTIME/[.,]/}
		REPLY=${REPLY:0:13}
	else
		printf -v REPLY '%(%s)T000' -1
	fi
}

# cf_write_event JSON: one file in the events folder, written atomically.
cf_write_event() {
	local name tmp
	cf_now_ms
	name="$REPLY-$$-$RANDOM.json"
	tmp="$CF_EVDIR/.tmp-$name"
	{ printf '%s\n' "$1" >"$tmp"; } 2>/dev/null || return 1
	if ! mv -f -- "$tmp" "$CF_EVDIR/$name" 2>/dev/null; then
		rm -f -- "$tmp" 2>/dev/null
		return 1
	fi
	return 0
}

# cf_record DECISION RULE REASON: an event for the daemon, else a line in the audit log.
cf_record() {
	local j dir
	cf_now_ms
	j="{\"v\":1,\"kind\":\"guard\",\"at\":$REPLY"
	cf_jesc "${CLAUDE_FAILOVER_SESSION-}"
	j+=",\"session\":\"$REPLY\""
	cf_jesc "${TMUX_PANE-}"
	j+=",\"pane\":\"$REPLY\",\"decision\":\"$1\""
	cf_jesc "$2"
	j+=",\"rule\":\"$REPLY\""
	cf_jdec "$J_TOOL"
	cf_jesc "$REPLY"
	j+=",\"tool\":\"$REPLY\""
	cf_jesc "$3"
	j+=",\"reason\":\"$REPLY\""
	cf_jdec "$J_SID"
	cf_jesc "$REPLY"
	j+=",\"claude_session_id\":\"$REPLY\""
	cf_jdec "$J_CWD"
	cf_jesc "$REPLY"
	j+=",\"cwd\":\"$REPLY\""
	cf_cut "$CF_DETAIL" 500
	cf_jesc "$REPLY"
	j+=",\"detail\":\"$REPLY\"}"
	if [[ -n $CF_EVDIR && -d $CF_EVDIR ]] && cf_write_event "$j"; then
		return 0
	fi
	dir=${BASH_SOURCE[0]-}
	if [[ $dir == */* ]]; then dir=${dir%/*}; else dir=.; fi
	{ printf '%s\n' "$j" >>"$dir/claude-failover.audit.log"; } 2>/dev/null
	return 0
}

# ---------------------------------------------------------------- decisions
# cf_oneline TEXT MAX -> REPLY: printable, one line, shortened.
cf_oneline() {
	local s=$1
	s=${s//$'\x03'/'$(…)'}
	s=${s//$'\x04'/'$(…)'}
	s=${s//[[:cntrl:]]/ }
	if ((${#s} > $2)); then
		cf_cut "$s" "$2"
		s="$REPLY…"
	fi
	REPLY=$s
}

# cf_block RULE WHAT WHY INSTEAD: the first block found wins.
cf_block() {
	[[ -n $CF_RULE ]] && return 0
	CF_RULE=$1
	cf_oneline "$2" 160
	CF_MSG="claude-failover guard blocked ${J_TOOL:-this call}: $REPLY [rule $1]: $3. Instead: $4."
	return 0
}

cf_warn() {
	[[ -n $CF_WRULE ]] && return 0
	CF_WRULE=$1
	CF_WMSG="claude-failover guard warning [rule $1]: $2"
	return 0
}

cf_finish() {
	if [[ -n $CF_RULE ]]; then
		case $CF_MODE in
		enforce)
			cf_record block "$CF_RULE" "$CF_MSG"
			printf '%s\n' "$CF_MSG" >&2
			exit 2
			;;
		learn)
			cf_record learn "$CF_RULE" "$CF_MSG"
			[[ -n $CF_WRULE ]] && cf_record warn "$CF_WRULE" "$CF_WMSG"
			exit 0
			;;
		esac
		exit 0
	fi
	if [[ -n $CF_WRULE ]]; then
		cf_record warn "$CF_WRULE" "$CF_WMSG"
	fi
	exit 0
}

# ---------------------------------------------------------------- paths
# cf_norm PATH -> REPLY: absolute (against CF_CWD), without . .. // and trailing /.
cf_norm() {
	local p=$1 seg
	[[ $p == /* ]] || p=$CF_CWD/$p
	if [[ $p == */.* || $p == *//* || $p == */ ]]; then
		local IFS=/
		local -a parts st=()
		# shellcheck disable=SC2206 # split on / on purpose; globbing is off (set -f)
		parts=($p)
		for seg in "${parts[@]}"; do
			case $seg in
			'' | .) ;;
			..) ((${#st[@]})) && unset "st[$((${#st[@]} - 1))]" ;;
			*) st+=("$seg") ;;
			esac
		done
		p="/${st[*]}"
	fi
	case $p in
	/proc/*/root | /proc/*/root/*)
		p=/${p#/proc/*/root}
		p=${p//\/\///}
		[[ $p == / ]] || p=${p%/}
		;;
	/proc/*/cwd | /proc/*/cwd/*) p=$CF_CWD${p#/proc/*/cwd} ;;
	esac
	((${#CF_LINKS[@]})) && cf_unlink "$p" && p=$REPLY
	REPLY=$p
}

# cf_unlink ABSPATH -> REPLY: through the symbolic links made earlier in this command.
cf_unlink() {
	local l
	for l in "${!CF_LINKS[@]}"; do
		if [[ $1 == "$l" ]]; then
			REPLY=${CF_LINKS[$l]}
			return 0
		elif [[ $1 == "$l"/* ]]; then
			REPLY=${CF_LINKS[$l]}${1#"$l"}
			return 0
		fi
	done
	return 1
}

# cf_prot ABSPATH: a path that no agent may write, move, link, chmod or remove.
cf_prot() {
	case $1 in
	*/.claude | */.claude/hooks | */.claude/hooks/* | */.claude/settings*.json) return 0 ;;
	*/.ssh/authorized_keys* | */.ssh/rc) return 0 ;;
	/etc/sudoers* | /etc/systemd | /etc/systemd/* | /usr/lib/systemd/* | /lib/systemd/*) return 0 ;;
	/etc/profile | /etc/profile.d | /etc/profile.d/* | /etc/bash.bashrc | /etc/bashrc | /etc/zshrc | /etc/zsh/* | /etc/zprofile | /etc/zshenv | /etc/zlogin | /etc/environment) return 0 ;;
	/etc/cron* | /var/spool/cron | /var/spool/cron/* | /etc/claude-code/* | /etc/ld.so.preload) return 0 ;;
	/usr/local/lib/systemd/* | /run/systemd/* | /etc/init.d/* | /etc/rc.local | /etc/xdg/autostart/* | /etc/update-motd.d/* | /etc/pam.d/* | /etc/ssh/sshd_config*) return 0 ;;
	esac
	local rel=''
	case $1 in
	"$CF_HOME"/*) rel=${1#"$CF_HOME"/} ;;
	/root/*) rel=${1#/root/} ;;
	/home/*/*) rel=${1#/home/*/} ;; # any user's startup files, not only ours
	*) return 1 ;;
	esac
	case $rel in
	.bashrc | .zshrc | .profile | .bash_profile | .bash_login | .bash_logout | .bash_aliases | .bashrc.d | .bashrc.d/* | .zshrc.d | .zshrc.d/* | .zprofile | .zshenv | .zlogin | .zlogout | .kshrc | .mkshrc | .cshrc | .tcshrc | .inputrc | .pam_environment | .xprofile | .xsessionrc | .ssh/authorized_keys* | .ssh/rc | .ssh/config) return 0 ;;
	.config/fish/config.fish | .config/fish/conf.d | .config/fish/conf.d/* | .config/fish/functions/* | .config/systemd/user/* | .config/autostart/* | .config/environment.d/*) return 0 ;;
	esac
	return 1
}

# cf_holds_prot ABSPATH: removing or moving ABSPATH takes protected files with it
# (rm -rf ~/.ssh, mv ~/.config x, rm -r .claude's parent).
cf_holds_prot() {
	local rel
	case $1 in
	/etc/ssh | /etc/pam.d | /etc/xdg | /etc/xdg/autostart | /etc/update-motd.d | /etc/init.d | /usr/local/lib | /usr/local/lib/systemd | /run/systemd | /var/spool) return 0 ;;
	"$CF_HOME"/*) rel=${1#"$CF_HOME"/} ;;
	/root/*) rel=${1#/root/} ;;
	/home/*/*) rel=${1#/home/*/} ;;
	*) return 1 ;;
	esac
	case $rel in
	.ssh | .config | .config/fish | .config/fish/conf.d | .config/fish/functions | .config/systemd | .config/systemd/user | .config/autostart | .config/environment.d | .bashrc.d | .zshrc.d) return 0 ;;
	esac
	return 1
}

# cf_check_remove WORD HOW: WORD is removed or moved away.
cf_check_remove() {
	cf_check_write "$1" "$2"
	cf_unknown "$1" && return 0
	cf_norm "$1"
	[[ $REPLY == *[*?[]* ]] && return 0
	if cf_holds_prot "$REPLY"; then
		local d=$REPLY
		cf_what
		cf_block protected-write "$REPLY" "$2 $d takes protected files with it (SSH keys, shell startup files, Claude Code settings or hooks, system units)" "remove or move only the files you created inside the project"
	fi
}


# ---------------------------------------------------------------- events and tools (stage 1)
cf_filetool() {
	local path
	cf_jdec "$T_PATH"
	path=$REPLY
	CF_DETAIL=$path
	if [[ -z $path ]]; then
		cf_block bad-input "$J_TOOL without a file_path" "the guard cannot tell which file this call changes" "retry the call with an absolute file_path"
		return
	fi
	cf_norm "$path"
	if cf_prot "$REPLY"; then
		cf_block protected-write "$J_TOOL $path" "it is a protected file (Claude Code settings or hooks, shell startup files, SSH keys, sudoers, system units)" "change files inside the project; the guard and .claude/settings*.json are managed by claude-failover"
		return
	fi
	if [[ $T_TEXT == *disableAllHooks* || $T_TEXT == *allowManagedHooksOnly* ]]; then
		cf_jdec "$T_TEXT"
		if [[ $REPLY =~ $CF_RE_DAH || $REPLY =~ allowManagedHooksOnly[^A-Za-z0-9,}]{0,16}true ]]; then
			case $path in
			*.json | *.json5 | *.jsonc | */settings* | */managed-settings*)
				cf_block disable-hooks "$J_TOOL $path" "the new text sets disableAllHooks (or allowManagedHooksOnly), which would switch the guard and every hook off" "leave hooks enabled; ask the operator to change Claude Code settings"
				;;
			esac
		fi
	fi
}

cf_config_change() {
	local src file
	[[ $CF_MODE == off ]] && exit 0
	cf_jdec "$J_SOURCE"
	src=$REPLY
	case $src in
	project_settings | local_settings)
		cf_jdec "$J_FILE"
		file=${REPLY:-.claude/settings*.json}
		CF_DETAIL=$file
		J_TOOL=ConfigChange
		CF_RULE=config-change
		cf_oneline "$file" 200
		CF_MSG="claude-failover guard refused a mid-session change to $REPLY ($src) [rule config-change]: project and local settings (hooks, permissions, disableAllHooks) must not change under a running agent. Instead: restore the file, or review it and restart the session."
		cf_finish
		;;
	esac
	exit 0
}

cf_hook_event() {
	local j
	[[ -n $CF_EVDIR && -d $CF_EVDIR ]] || return 0
	[[ -n ${CLAUDE_FAILOVER_SESSION-} || -n ${TMUX_PANE-} ]] || return 0
	cf_now_ms
	j="{\"v\":1,\"kind\":\"hook\",\"at\":$REPLY"
	cf_jesc "${CLAUDE_FAILOVER_SESSION-}"
	j+=",\"session\":\"$REPLY\""
	cf_jesc "${TMUX_PANE-}"
	j+=",\"pane\":\"$REPLY\""
	if ((J_OK)); then
		j+=",\"event\":$CF_IN}"
	else
		cf_jesc "$CF_IN"
		j+=",\"event\":null,\"raw\":\"$REPLY\"}"
	fi
	cf_write_event "$j"
	return 0
}

# cf_quick CMD: true when no rule can apply to CMD, so the full analysis (below the
# first stage, never even parsed then) can be skipped. Conservative: any trigger word
# as a word, any substitution, redirection to a file or protected name sends CMD on.
CF_TRIGS=' config python python2 python3 pypy pypy3 node nodejs deno bun php taskset systemd-run parallel script tmux screen at batch awk gawk mawk nawk npx bunx pnpx pnpm yarn docker podman nerdctl cryptsetup machinectl lvremove vgremove pvremove zpool zfs mdadm nvme hdparm badblocks sg_format export declare typeset readonly local read for select set alias printf rimraf mkexfatfs mkfatfs mkudffs mkreiserfs mkbtrfs mkxfs rm rmdir unlink dd mkfs mke2fs mkswap mkntfs mkdosfs wipefs blkdiscard sgdisk sfdisk parted fdisk shred push reset checkout restore stash switch clean apply am mv sudo sudoedit doas pkexec run0 su runuser sg ksu calife curl wget fetch aria2c http https xh lynx links base64 base32 basenc openssl xxd uudecode crontab chmod chown chgrp chattr setfacl touch truncate tee sponge cp ln install rsync scp sed yq perl ruby tar bsdtar unzip 7z cpio vi vim nvim nano emacs ed ex pico micro joe find kubectl kubecolor oc helm terraform tofu terragrunt drop delete claude eval source exec xargs watch flock env busybox '
cf_quick() {
	local t=$1 w
	local -a ws
	((${#t} > 4000)) && return 1
	case $t in *'$('* | *'`'* | *'<('* | *'>('* | *"\$'"* | *'${'*) return 1 ;; esac
	t=${t,,}
	t=${t//[\'\"\\]/}
	[[ $t == *'$'* && $t == *=* ]] && return 1
	[[ $t == *'$'[a-z_0-9@*]* ]] && return 1 # r$NOPE"m": an unknown variable may be empty
	if [[ $t == *'>'* ]]; then
		w=${t//[0-9]>&[0-9-]/}
		w=${w//>&[0-9-]/}
		w=${w//>\/dev\/null/}
		w=${w//> \/dev\/null/}
		[[ $w == *'>'* ]] && return 1
	fi
	[[ $t == *'{'* && $t == *'|'* && $t == *'&'* ]] && return 1
	case $t in
	*.claude* | *authorized_keys* | *sudoers* | *systemd* | *claude-failover* | *disableallhooks* | *allowmanagedhooksonly* | *'/dev/'*) return 1 ;;
	esac
	w=${t//[^a-z0-9_-]/ }
	# shellcheck disable=SC2206 # split into words on purpose; globbing is off (set -f)
	ws=($w)
	for w in "${ws[@]}"; do
		[[ $CF_TRIGS == *" $w "* ]] && return 1
	done
	return 0
}

# ---------------------------------------------------------------- stage 1
# Read the call, answer the session events, ConfigChange, the file tools and the
# plain commands. Only a Bash command with a trigger word goes on to stage 2.
# read -N takes a pipe one byte per system call (7 s a MB): beyond the first 4 KB (which
# holds any session event, byte for byte), cat reads the rest in blocks (from where read
# stopped: $(</dev/stdin) would reopen a file at its start).
IFS= read -r -N 4096 -t 8 CF_IN
if ((${#CF_IN} == 4096)); then
	if type -P cat >/dev/null; then
		{ CF_IN+=$(cat); } 2>/dev/null
	else
		IFS= read -r -N 100000000 -t 8 cf_more
		CF_IN+=$cf_more
	fi
fi
if [[ $CF_MODE == off && $CF_IN != *'"hook_event_name"'* ]]; then
	exit 0
fi
cf_json "$CF_IN"
cf_jdec "$J_EVENT"
CF_EV=$REPLY
cf_jdec "$J_TOOL"
J_TOOL=$REPLY
[[ -z $CF_EV && -n $J_TOOL ]] && CF_EV=PreToolUse
case $CF_EV in
SessionStart | Stop | StopFailure | Notification | SessionEnd)
	CF_PHASE=event
	cf_hook_event
	exit 0
	;;
ConfigChange) cf_config_change ;;
PreToolUse | '') ;;
*)
	CF_PHASE=event
	exit 0
	;;
esac
[[ $CF_MODE == off ]] && exit 0
CF_PROJ=${CLAUDE_PROJECT_DIR-}
[[ $CF_PROJ == / ]] || CF_PROJ=${CF_PROJ%/}
cf_jdec "$J_CWD"
CF_CWD=$REPLY
[[ $CF_CWD == /* ]] || CF_CWD=${CF_PROJ:-${PWD:-/}}
[[ -z $CF_PROJ ]] && CF_PROJ=$CF_CWD
if ((!J_OK)); then
	CF_DETAIL=$CF_IN
	cf_block bad-input "this call" "the hook input is not a JSON object the guard can read" "retry the call"
	cf_finish
fi
if [[ -z $J_TOOL ]]; then
	CF_DETAIL=$CF_IN
	cf_block bad-input "this call" "the hook input has no tool_name" "retry the call"
	cf_finish
fi
case $J_TOOL in
Bash)
	if ((!T_HASCMD)); then
		cf_block bad-input "Bash call" "tool_input.command is missing" "retry the call with a command"
		cf_finish
	fi
	if ((${#T_CMD} > CF_MAXCMD)); then
		CF_DETAIL=${T_CMD:0:500}
		cf_block too-long "a Bash command of ${#T_CMD} bytes" "the guard checks Bash commands of up to $CF_MAXCMD bytes, and a longer one could hide anything" "write the script to a file inside the project with the Write tool, read it, then run it"
		cf_finish
	fi
	cf_jdec "$T_CMD"
	CF_CMD=$REPLY
	cf_quick "$CF_CMD" && exit 0
	;;
Write | Edit | MultiEdit | NotebookEdit)
	cf_filetool
	cf_finish
	;;
*) exit 0 ;;
esac

# ---------------------------------------------------------------- stage 2: the shell analysis
# Bash copies a function's body on every call: functions called per word or per
# command are kept small; the large ones run once per command at most.

CF_SKEL='' CF_NFETCH=0 CF_DEPTH=0 CF_SQL=0 CF_SAWDB=0
CF_IN_FETCH=0 CF_IN_DAH=0 CF_IN_TEXT='' CF_SUBOUT=''
declare -A CF_FETCHED=() CF_ALIAS=() CF_LINKS=()
declare -a CF_POS=()
CF_HAVEPOS=0
CF_S_FETCH=0 CF_S_STDIN='' CF_S_WRITES=0 CF_S_DAH=0
declare -A CF_VARS=()
CF_WPAT=$'[ \t\n;&|()<>\'"\\\\$`]*'
CF_RE_SQL='drop[[:space:]]+(table|database|schema)[[:space:]]|truncate[[:space:]]+table[[:space:]]|delete[[:space:]]+from[[:space:]][^;]*where[[:space:]]+1[[:space:]]*=[[:space:]]*1'
CF_RE_FORK1='(^|[ ;&|])([^ ]+) \( \) \{ \2 \| \2 &'
CF_RE_FORK2='function ([^ ]+) (\( \) )?\{ \1 \| \1 &'
CF_RE_FORK3='(^|[ ;&|])([^ ]+) \( \) \{ \2 & \2( &)? \}'
CF_RE_WW='[+=][^-+=]*w'
# programs worth a full look (the rest is skipped: see cf_endcmd)
CF_LOOK="$CF_TRIGS export declare typeset readonly local read for select set alias at batch awk gawk mawk nawk taskset systemd-run parallel script tmux screen npx bunx pnpx pnpm yarn docker podman nerdctl cryptsetup machinectl lvremove vgremove pvremove zpool zfs mdadm nvme hdparm badblocks sg_format git sh bash dash zsh ksh mksh ash yash fish csh tcsh rbash python python2 python3 pypy pypy3 node nodejs deno bun perl ruby php lua Rscript tclsh wish osascript jshell groovy pwsh . cd pushd ! { } if then else elif do while until fi done esac builtin nohup unbuffer chronic nocache catchsegv stdbuf ionice setsid chroot time nice timeout command "
CF_WRAPS=' ! { } if then else elif do while until fi done esac builtin nohup unbuffer chronic nocache catchsegv busybox stdbuf ionice setsid chroot exec time nice timeout env command xargs flock sudo doas pkexec run0 watch '

# cf_prot_glob ABSGLOB: could the glob name a protected path?
cf_prot_glob() {
	local g=$1 d c rg rc
	d=${g%%[*?[]*}
	d=${d%/*}
	rg=${g#"$d"/}
	for c in "$d/.claude" "$d/.claude/hooks" "$d/.claude/hooks/claude-failover.sh" "$d/.claude/settings.json" \
		"$d/.claude/settings.local.json" "$d/hooks" "$d/hooks/claude-failover.sh" "$d/claude-failover.sh" \
		"$d/settings.json" "$d/settings.local.json" "$d/.bashrc" "$d/.zshrc" "$d/.profile" "$d/.bash_profile" \
		"$d/.ssh/authorized_keys" "$d/authorized_keys" "$d/sudoers" "$d/sudoers.d" "$d/systemd"; do
		rc=${c#"$d"/}
		[[ $rg != .* && $rc == .* ]] && continue
		# shellcheck disable=SC2053 # $g is a glob on purpose
		[[ $c == $g ]] && cf_prot "$c" && return 0
	done
	return 1
}

cf_blockdev() {
	case $1 in
	/dev/sd* | /dev/hd* | /dev/vd* | /dev/xvd* | /dev/nvme* | /dev/mmcblk* | /dev/disk* | /dev/md* | /dev/dm-* | /dev/mapper/* | /dev/loop* | /dev/nbd* | /dev/rbd* | /dev/sr* | /dev/mtd*) return 0 ;;
	/dev/block/* | /dev/root | /dev/zd* | /dev/bcache* | /dev/ram* | /dev/ubi* | /dev/sg[0-9]* | /dev/mem | /dev/kmem | /dev/port | /dev/drbd* | /dev/zvol/*) return 0 ;;
	/dev/fd/* | /dev/pts/* | /dev/shm/* | /dev/mqueue/* | /dev/net/* | /dev/input/* | /dev/snd/* | /dev/dri/* | /dev/char/* | /dev/bus/* | /dev/hugepages/* | /dev/usb/* | /dev/v4l/* | /dev/serial/* | /dev/cpu/*) ;;
	/dev/*/*) return 0 ;; # LVM volumes (/dev/VG/LV) and other disks by name
	esac
	return 1
}

# cf_unknown WORD: holds a substitution or a variable we cannot know.
cf_unknown() {
	[[ $1 == *[$'\x03\x04']* || $1 == *'$'* ]]
}

# cf_check_write WORD HOW: WORD is written, removed, moved or chmod'ed.
cf_check_write() {
	local p=$1
	[[ -z $p ]] && return 0
	cf_unknown "$p" && return 0
	cf_norm "$p"
	p=$REPLY
	if [[ $p == *[*?[]* ]]; then
		cf_prot_glob "$p" || return 0
	elif ! cf_prot "$p"; then
		if [[ $p == /dev/* ]] && cf_blockdev "$p"; then
			cf_what
			cf_block disk-write "$REPLY" "$2 the block device $p would destroy a disk" "write an image file inside the project (for example dd of=./disk.img)"
		fi
		return 0
	fi
	cf_what
	cf_block protected-write "$REPLY" "$2 $p touches a protected file (Claude Code settings or hooks, shell startup files, SSH keys, sudoers, system units)" "change files inside the project; .claude/settings*.json and the hook are managed by claude-failover"
	return 0
}

# cf_rootdir ABSPATH [glob]: /, a system folder, HOME, or an ancestor of HOME or of the
# project (the project itself too, unless globbed: * leaves its dot folders alone).
cf_rootdir() {
	case $1 in
	/ | /etc | /var | /usr | /boot | /bin | /sbin | /lib | /lib32 | /lib64 | /libx32 | /opt | /srv | /root | /home | /dev | /proc | /sys | /snap | /mnt | /media | /run) return 0 ;;
	/usr/bin | /usr/sbin | /usr/lib | /usr/lib64 | /usr/local | /usr/share | /usr/include | /var/lib | /var/log) return 0 ;;
	esac
	[[ $1 == "$CF_HOME" || $CF_HOME == "$1"/* ]] && return 0
	[[ $1 == /home/* && $1 != /home/*/* ]] && return 0 # another user's home (~bob)
	if [[ -n $CF_PROJ ]]; then
		[[ $CF_PROJ == "$1"/* ]] && return 0
		[[ -z $2 && $CF_PROJ == "$1" ]] && return 0
	fi
	return 1
}

# cf_base WORD -> REPLY: WORD as an absolute path; a glob cuts it to the folder
# before the glob (CF_GLOB=glob then). Fails for words that cannot be known.
cf_base() {
	local d
	CF_GLOB=
	cf_unknown "$1" && return 1
	cf_norm "$1"
	if [[ $REPLY == *[*?[]* ]]; then
		d=${REPLY%%[*?[]*}
		d=${d%/*}
		REPLY=${d:-/}
		CF_GLOB=glob
	fi
	return 0
}

# cf_rootish WORD: a recursive delete of WORD destroys the system, home or project.
cf_rootish() {
	cf_base "$1" || return 1
	cf_rootdir "$REPLY" "$CF_GLOB"
}

# cf_sysish WORD: a system path, HOME, a dot file of HOME, or an ancestor of HOME.
cf_sysish() {
	local p
	cf_base "$1" || return 1
	p=$REPLY
	# HOME first: a home folder under /tmp or /var/tmp is still home.
	[[ $p == "$CF_HOME" || $p == "$CF_HOME"/.* || $CF_HOME == "$p"/* ]] && return 0
	case $p in
	/tmp | /tmp/* | /var/tmp | /var/tmp/* | /dev/shm | /dev/shm/*) return 1 ;;
	/ | /etc | /etc/* | /usr | /usr/* | /var | /var/* | /bin | /bin/* | /sbin | /sbin/* | /lib* | /boot | /boot/* | /opt | /opt/* | /srv | /srv/* | /root | /root/* | /home | /dev | /dev/* | /sys | /sys/* | /proc | /proc/* | /snap | /snap/* | /run | /run/*) return 0 ;;
	esac
	return 1
}

# cf_what [pipe] -> REPLY: the simple command (or pipeline) being judged, as written.
cf_what() {
	local s=$CF_RAW
	[[ $1 == pipe ]] && s=$CF_PRAW
	local o c
	s=${s#"${s%%[![:space:]]*}"}
	s=${s%"${s##*[![:space:];&|]}"}
	o=${s//[!(]/}
	c=${s//[!)]/}
	if ((${#c} > ${#o})) && [[ $s == *')' ]]; then
		s=${s%)}
		s=${s%"${s##*[![:space:];&|]}"}
	fi
	if [[ -z $s ]]; then
		local IFS=' '
		s="${W[*]}"
	fi
	REPLY=$s
}

# cf_clock: past the budget, block (once) and make every lexing loop stop.
cf_clock() {
	local now=${EPOCHREALTIME-} st
	now=${now/[.,]/}
	if [[ -n $now && -n $CF_T0 ]]; then
		if ((now - CF_T0 <= CF_WALL)); then
			# CPU time (utime + stime, in 1/100 s) from /proc: load does not count
			{ read -r -a st </proc/$$/stat; } 2>/dev/null || return 0
			[[ ${st[1]} == '(bash)' && ${st[13]} =~ ^[0-9]+$ && ${st[14]} =~ ^[0-9]+$ ]] || return 0
			(((st[13] + st[14]) * 10000 > CF_BUDGET)) || return 0
		fi
	else
		((SECONDS >= 2)) || return 0 # bash before 5.0: whole seconds only
	fi
	CF_OVER=1
	cf_block too-long "a Bash command of ${#CF_CMD} bytes" "the guard could not finish checking it within its time budget" "split it into shorter commands, or write the script to a file inside the project, read it, then run it"
}

# ---------------------------------------------------------------- the lexer
# Works on the caller's $rest. Words lose their quotes; known variables ($HOME, ~,
# $PWD, $CLAUDE_PROJECT_DIR, assignments seen earlier) are expanded; a command or
# process substitution becomes \x03 when it fetched from the network, else \x04.

# cf_var NAME -> REPLY when known
cf_var() {
	case $1 in
	HOME) REPLY=$CF_HOME ;;
	PWD) REPLY=$CF_CWD ;;
	IFS) REPLY=${CF_VARS[IFS]-' '} ;;
	CLAUDE_PROJECT_DIR) REPLY=${CLAUDE_PROJECT_DIR-} ;;
	*)
		[[ -n ${CF_VARS[$1]+x} ]] || return 1
		REPLY=${CF_VARS[$1]}
		;;
	esac
	return 0
}

# cf_subst: rest starts after "$(" or "<(": lex up to the matching ")".
# A $(echo …) or $(printf …) of literal text is that text; <(…) and >(…) stay unknown
# (\x04) but carry it after \x0b, and mark a shell reading its stdin with \x0c.
cf_subst() { # $1: psub for <( and >(
	local n=$CF_NFETCH save=$rest inner
	CF_SUBOUT=''
	cf_lex_core 1
	if ((CF_NFETCH > n)); then
		WV+=$'\x03'
	elif [[ $1 != psub && -n $CF_SUBOUT ]]; then
		inner=$CF_SUBOUT
		while [[ $inner == *$'\n' ]]; do inner=${inner%$'\n'}; done
		WV+=$inner
		WX=1
	else
		WV+=$'\x04'
		if [[ $1 == psub ]]; then
			inner=${save:0:${#save}-${#rest}}
			[[ -n $CF_SUBOUT ]] && WV+=$'\x0b'$CF_SUBOUT
			[[ $inner =~ ^[[:space:]]*(sudo[[:space:]]+)?([^[:space:]]*/)?(ba|da|z|k|mk)?sh[[:space:]]*\)$ ]] && WV+=$'\x0c'
		fi
	fi
	CF_SUBOUT=''
}

# cf_outtext -> REPLY: what the echo, printf or cat <<< in W prints, when it is literal.
cf_outtext() {
	local -a a=("${W[@]:1}")
	local r
	case ${W[0]##*/} in
	echo)
		while [[ ${a[0]} == -[neE]* && ${a[0]} != *[!-neE]* ]]; do a=("${a[@]:1}"); done
		local IFS=' '
		REPLY="${a[*]}"
		;;
	printf)
		[[ ${a[0]} == -- ]] && a=("${a[@]:1}")
		((${#a[@]})) || return 1
		[[ ${a[0]} == -* || ${a[0]} =~ %[-+#0\ ]*[0-9]{4} ]] && return 1
		# shellcheck disable=SC2059 # the format is the command's own, run by printf only
		printf -v REPLY -- "${a[0]}" "${a[@]:1}" 2>/dev/null || return 1
		;;
	cat)
		REPLY=''
		for r in "${R[@]}"; do
			[[ ${r%%$'\x1f'*} == '<<<' ]] && REPLY=${r#*$'\x1f'}
		done
		[[ -n $REPLY ]] || return 1
		;;
	*) return 1 ;;
	esac
	[[ $REPLY != *[$'\x03\x04']* ]]
}

cf_arith() { # rest starts with "((": skip to the matching "))"
	local dep=0 k c
	for ((k = 0; k < ${#rest}; k++)); do
		c=${rest:k:1}
		if [[ $c == '(' ]]; then
			((dep++))
		elif [[ $c == ')' ]] && ((--dep == 0)); then
			break
		fi
	done
	rest=${rest:k+1}
}

cf_backtick() { # rest starts with a backtick
	local inner='' seg n=$CF_NFETCH
	rest=${rest:1}
	while [[ -n $rest ]]; do
		((++CF_TICK & 31)) || cf_clock
		((CF_OVER)) && break
		seg=${rest%%[\`\\]*}
		inner+=$seg
		rest=${rest:${#seg}}
		if [[ $rest == '`'* ]]; then
			rest=${rest:1}
			break
		fi
		case ${rest:1:1} in
		'`' | '$' | \\) inner+=${rest:1:1} ;;
		*) inner+=${rest:0:2} ;;
		esac
		rest=${rest:2}
	done
	cf_lex_string "$inner"
	if ((CF_NFETCH > n)); then WV+=$'\x03'; else WV+=$'\x04'; fi
}

cf_dollar() { # rest starts with $ ; $1=1 inside double quotes
	local nm
	case ${rest:1:1} in
	'(')
		rest=${rest:1}
		if [[ $rest == '(('* ]]; then
			cf_arith
			WV+=$'\x04'
		else
			rest=${rest:1}
			cf_subst
		fi
		;;
	'{')
		cf_brace
		[[ $1 == 1 ]] && WX=0
		;;
	\')
		if [[ $1 == 1 ]]; then
			WV+='$'
			rest=${rest:1}
		else
			cf_ansi
		fi
		;;
	'"')
		rest=${rest:1}
		[[ $1 == 1 ]] && WV+='$'
		;;
	[A-Za-z_])
		nm=${rest:1}
		nm=${nm%%[!A-Za-z0-9_]*}
		rest=${rest:${#nm}+1}
		if cf_var "$nm"; then WV+=$REPLY; else WV+="\${$nm}"; fi
		[[ $1 == 1 ]] || WX=1
		;;
	[0-9@*])
		nm=${rest:1:1}
		rest=${rest:2}
		if ((!CF_HAVEPOS)); then
			WV+="\${$nm}"
		elif [[ $nm == [0-9] ]]; then
			WV+=${CF_POS[nm]}
			[[ $1 == 1 ]] || WX=1
		else
			local IFS=$'\x06'
			[[ $1 == 1 && $nm == @ ]] || IFS=' '
			WV+="${CF_POS[*]:1}"
			[[ $1 == 1 ]] || WX=1
		fi
		;;
	[#?$!-])
		WV+=${rest:0:2}
		rest=${rest:2}
		;;
	*)
		WV+='$'
		rest=${rest:1}
		;;
	esac
}

cf_brace() { # rest starts with ${
	local nm=${rest:2}
	nm=${nm%%\}*}
	rest=${rest:${#nm}+3}
	if [[ $nm =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && cf_var "$nm"; then
		WV+=$REPLY
		return
	fi
	[[ $nm == *'$('* || $nm == *'`'* ]] && cf_scan_subs "$nm"
	cf_param "$nm" && return
	WV+="\${$nm}"
}

# cf_param TEXT: ${NAME<op>WORD} with a literal WORD: ${HOME:?}, ${X:-/}, ${HOME%/}.
# A known NAME gives its value (trimmed for % and #); an unknown one its default.
cf_param() {
	local re='^([A-Za-z_][A-Za-z0-9_]*|[0-9])(:?[-=?+]|%%?|##?)(.*)$' nm op w v
	[[ $1 =~ $re ]] || return 1
	nm=${BASH_REMATCH[1]} op=${BASH_REMATCH[2]} w=${BASH_REMATCH[3]}
	[[ $w == *[\$\`\'\"]* ]] && return 1
	if cf_var "$nm"; then
		v=$REPLY
		# shellcheck disable=SC2295 # WORD is a pattern, as in the shell
	case $op in
		%) v=${v%$w} ;;
		%%) v=${v%%$w} ;;
		'#') v=${v#$w} ;;
		'##') v=${v##$w} ;;
		*+) v=$w ;;
		esac
	else
		case $op in
		*[-=]) v=$w ;;
		*) return 1 ;;
		esac
	fi
	WV+=$v
	WX=1
}

cf_ansi() { # rest starts with $'
	local inner='' seg
	rest=${rest:2}
	while [[ -n $rest ]]; do
		((++CF_TICK & 31)) || cf_clock
		((CF_OVER)) && break
		seg=${rest%%[\'\\]*}
		inner+=$seg
		rest=${rest:${#seg}}
		if [[ $rest == \'* ]]; then
			rest=${rest:1}
			break
		fi
		inner+=${rest:0:2}
		rest=${rest:2}
	done
	inner=${inner//\\\'/\'}
	inner=${inner//\\e/\\x1b}
	inner=${inner//\\E/\\x1b}
	printf -v inner '%b' "$inner"
	WV+=$inner
	WQ=1
}

cf_dq() { # rest starts with "
	local seg
	WQ=1
	rest=${rest:1}
	while [[ -n $rest ]]; do
		((++CF_TICK & 31)) || cf_clock
		((CF_OVER)) && break
		seg=${rest%%[\"\\\$\`]*}
		WV+=$seg
		rest=${rest:${#seg}}
		case ${rest:0:1} in
		'"')
			rest=${rest:1}
			return
			;;
		\\)
			case ${rest:1:1} in
			'$' | '`' | '"' | \\) WV+=${rest:1:1} ;;
			$'\n') ;;
			*) WV+=${rest:0:2} ;;
			esac
			rest=${rest:2}
			;;
		'$') cf_dollar 1 ;;
		'`') cf_backtick ;;
		esac
	done
}

cf_tilde() { # seg starts with ~ at the start of an unquoted word (or after NAME=)
	local pre='' u
	if [[ $seg == [A-Za-z_]*=~* ]]; then
		pre=${seg%%=*}=
		seg=${seg#*=}
	fi
	# shellcheck disable=SC2088 # expanding the tilde by hand
	case $seg in
	'~' | '~/'*) seg=$CF_HOME${seg:1} ;;
	'~root' | '~root/'*) seg=/root${seg:5} ;;
	'~+' | '~+/'*) seg=$CF_CWD${seg:2} ;;
	'~-' | '~-/'*) ;;
	'~'[A-Za-z_]*)
		u=${seg:1}
		u=${u%%/*}
		[[ $u == *[!A-Za-z0-9._-]* ]] || seg=/home/$u${seg:${#u}+1}
		;;
	esac
	seg=$pre$seg
}

# cf_word: one word from $rest -> WV (value), WQ (1 when any part was quoted)
cf_word() {
	local seg
	WV='' WQ=0 WX=0
	while [[ -n $rest ]]; do
		((++CF_TICK & 31)) || cf_clock
		((CF_OVER)) && break
		# shellcheck disable=SC2295 # CF_WPAT is a pattern
		seg=${rest%%$CF_WPAT}
		if [[ -n $seg ]]; then
			rest=${rest:${#seg}}
			[[ ($seg == '~'* || $seg == [A-Za-z_]*=~*) && -z $WV && $WQ == 0 ]] && cf_tilde
			WV+=$seg
			continue
		fi
		case ${rest:0:1} in
		\')
			seg=${rest:1}
			seg=${seg%%\'*}
			WV+=$seg
			WQ=1
			rest=${rest:${#seg}+2}
			;;
		'"') cf_dq ;;
		\\)
			[[ ${rest:1:1} == $'\n' ]] || WV+=${rest:1:1}
			WQ=1
			rest=${rest:2}
			;;
		'$') cf_dollar 0 ;;
		'`') cf_backtick ;;
		'<' | '>')
			[[ -z $WV && $WQ == 0 && ${rest:1:1} == '(' ]] || return
			rest=${rest:2}
			cf_subst psub
			;;
		*) return ;;
		esac
	done
}

# cf_scan_subs TEXT: analyse the $(...) and `...` inside TEXT (a heredoc body, ${...}).
# Each one is lexed from a window of the text, not from the whole (long) rest.
cf_scan_subs() {
	local rest=$1 pre WV WQ full n inner
	while :; do
		((++CF_TICK & 31)) || cf_clock
		((CF_OVER)) && break
		pre=${rest%%[\$\`]*}
		((${#pre} == ${#rest})) && break
		rest=${rest:${#pre}}
		case $rest in
		'$(('*) rest=${rest:3} ;;
		'$('* | '`'*)
			# a short plain one without trigger words needs no lexing
			if [[ $rest == '`'* ]]; then
				inner=${rest:1:300}
				inner=${inner%%\`*}
			else
				inner=${rest:2:300}
				inner=${inner%%\)*}
			fi
			if ((${#inner} < 300)) && [[ $inner != *[\(\`\"\'\\\$\<\>]* ]] && cf_quick "$inner"; then
				rest=${rest:${#inner}+2}
				[[ $rest == \)* ]] && rest=${rest:1}
				continue
			fi
			full=$rest
			rest=${rest:0:4000}
			n=${#rest}
			cf_scan_one
			if [[ -z $rest && ${#full} -gt $n ]]; then
				rest=$full # longer than the window: judge it on the whole text
				cf_scan_one
			else
				rest=${full:n-${#rest}}
			fi
			;;
		*) rest=${rest:1} ;;
		esac
	done
}

cf_scan_one() {
	if [[ $rest == '`'* ]]; then
		cf_backtick
	else
		rest=${rest:2}
		cf_subst
	fi
}

cf_lex_string() {
	local rest=$1
	cf_lex_core 0
}

# cf_lex_core SUB: split $rest into simple commands and judge each (cf_endcmd).
# SUB=1: inside $( ) or <( ): stop after the matching ")".
cf_lex_core() {
	local -a W=() R=() HDD=() HDQ=() HDS=() HDC=() HDW=() HDP=() PLSH=()
	local pipefetch=0 pipedah=0 inpipe=0 pl=0 hdmark=0 pd=0 op WV WQ WX pipetext='' ncmd=0 lastout=''
	local CF_S_FETCH=0 CF_S_STDIN='' CF_S_WRITES=0 CF_S_DAH=0 CF_IN_FETCH=0 CF_IN_DAH=0
	local orig=$rest olen=${#rest} cs=${#rest} ps=${#rest}
	if ((++CF_DEPTH > 12)); then
		cf_block too-complex "${rest:0:80}" "commands nested more than 12 levels deep cannot be checked" "split the command into simpler ones"
		rest=''
	fi
	while [[ -n $rest ]]; do
		((++CF_TICK & 31)) || cf_clock
		if ((CF_OVER)); then
			rest=''
			break
		fi
		case ${rest:0:1} in
		' ' | $'\t')
			op=${rest%%[!$' \t']*}
			rest=${rest:${#op}}
			;;
		$'\n')
			rest=${rest:1}
			cf_endcmd seq ' ;'
			cf_heredocs
			;;
		';')
			rest=${rest:1}
			cf_endcmd seq ' ;'
			;;
		'&')
			if [[ ${rest:1:1} == '>' ]]; then
				cf_redir
			elif [[ ${rest:1:1} == '&' ]]; then
				rest=${rest:2}
				cf_endcmd seq ' &&'
			else
				rest=${rest:1}
				cf_endcmd seq ' &'
			fi
			;;
		'|')
			if [[ ${rest:1:1} == '|' ]]; then
				rest=${rest:2}
				cf_endcmd seq ' ||'
			else
				[[ ${rest:1:1} == '&' ]] && rest=${rest:1}
				rest=${rest:1}
				cf_endcmd pipe ' |'
			fi
			;;
		'(')
			if [[ ${rest:1:1} == '(' && ${#W[@]} == 0 ]]; then
				cf_arith
			else
				rest=${rest:1}
				cf_endcmd seq ' ('
				((pd++))
			fi
			;;
		')')
			rest=${rest:1}
			cf_endcmd seq ' )'
			if ((pd == 0)) && [[ $1 == 1 ]]; then
				break
			fi
			((pd > 0)) && ((pd--))
			;;
		'<' | '>')
			if [[ ${rest:1:1} == '(' ]]; then
				cf_word
				W+=("$WV")
				CF_SKEL+=' S'
			else
				cf_redir
			fi
			;;
		'#')
			op=${rest%%$'\n'*}
			rest=${rest:${#op}}
			;;
		*) cf_addword ;;
		esac
	done
	cf_endcmd seq ''
	cf_heredocs
	((CF_DEPTH--))
	if [[ $1 == 1 ]] && ((ncmd == 1)); then CF_SUBOUT=$lastout; else CF_SUBOUT=''; fi
}

cf_addword() {
	cf_word
	if [[ $WQ == 0 && ${rest:0:1} == [\<\>] ]] && [[ $WV =~ ^[0-9]+$ || $WV =~ ^\{[A-Za-z_][A-Za-z0-9_]*\}$ ]]; then
		return # a file descriptor before a redirection
	fi
	if [[ $WV == *$'\x06'* ]]; then # "$@"
		local -a parts
		local IFS=$'\x06'
		# shellcheck disable=SC2206 # split on purpose; globbing is off (set -f)
		parts=($WV)
		W+=("${parts[@]}")
		CF_SKEL+=' Q'
		return
	fi
	if [[ $WQ == 0 && $WV == *[{}]* && $WV != *'${'* && $WV =~ \{[^{}]*(,|\.\.)[^{}]*\} ]]; then
		local -a BX=()
		cf_bexp "$WV"
		W+=("${BX[@]}")
		CF_SKEL+=" ${BX[*]}"
		return
	fi
	local ifs=${CF_VARS[IFS]-$' \t\n'}
	if [[ $WQ == 0 && ( $WV == *' '* || ($WX == 1 && -n $ifs && $WV == *["$ifs"]*) ) ]]; then
		# an unquoted $IFS (or a variable that holds IFS characters) splits the word
		local -a parts
		local IFS=$' \t\n'
		((WX)) && IFS=$ifs
		# shellcheck disable=SC2206 # split on purpose; globbing is off (set -f)
		parts=($WV)
		W+=("${parts[@]}")
		CF_SKEL+=" $WV"
		return
	fi
	if [[ -n $WV || $WQ == 1 ]]; then
		W+=("$WV")
		if [[ $WQ == 0 ]]; then CF_SKEL+=" $WV"; else CF_SKEL+=' Q'; fi
	fi
}

# cf_bexp WORD: brace expansion ({rm,-rf,/}, /{etc,usr}, {1..3}) into BX, at most 64 words.
cf_bexp() {
	local w=$1 pre mid post alt re='^([^{]*)\{([^{}]*)\}(.*)$' a b
	local -a alts
	((${#BX[@]} >= 64)) && return 0
	if [[ ! $w =~ $re ]]; then
		BX+=("$w")
		return 0
	fi
	pre=${BASH_REMATCH[1]} mid=${BASH_REMATCH[2]} post=${BASH_REMATCH[3]}
	if [[ $mid =~ ^(-?[0-9]{1,4})\.\.(-?[0-9]{1,4})$ ]]; then
		a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
		((a - b > 63 || b - a > 63)) && b=$a
		for ((; a != b; a += (a < b ? 1 : -1))); do alts+=("$a"); done
		alts+=("$b")
	elif [[ $mid == *,* ]]; then
		local IFS=,
		# shellcheck disable=SC2206 # split on commas on purpose; globbing is off (set -f)
		alts=($mid)
		[[ $mid == *, ]] && alts+=('')
	else
		BX+=("$w") # {x}: no expansion here
		return 0
	fi
	for alt in "${alts[@]}"; do cf_bexp "$pre$alt$post"; done
}

cf_redir() { # rest starts with a redirection operator
	local op sp
	case $rest in
	'&>>'*) op='&>>' ;;
	'&>'*) op='&>' ;;
	'<<<'*) op='<<<' ;;
	'<<-'*) op='<<-' ;;
	'<<'*) op='<<' ;;
	'<>'* | '<&'* | '>>'* | '>|'* | '>&'*) op=${rest:0:2} ;;
	*) op=${rest:0:1} ;;
	esac
	rest=${rest:${#op}}
	[[ $op == '&>'* ]] && op=${op:1}
	sp=${rest%%[!$' \t']*}
	rest=${rest:${#sp}}
	cf_word
	case $op in
	'<<' | '<<-')
		HDD+=("$WV")
		HDQ+=("$WQ")
		if [[ $op == '<<-' ]]; then HDS+=(1); else HDS+=(0); fi
		;;
	'<&') ;;
	'>&') [[ $WV =~ ^[0-9]*-?$ ]] || R+=(">"$'\x1f'"$WV") ;;
	*) R+=("$op"$'\x1f'"$WV") ;;
	esac
}

# cf_endcmd pipe|seq SKEL: a simple command ends here; judge it.
cf_endcmd() {
	local p0 ptext=$pipetext
	pipetext=''
	if ((${#W[@]} + ${#R[@]})); then
		((ncmd++))
		p0=${W[0]##*/}
		lastout=''
		if [[ $p0 == echo || $p0 == printf || $p0 == cat ]] && cf_outtext; then
			lastout=$REPLY
			[[ $1 == pipe ]] && pipetext=$REPLY
		fi
		if ((${#R[@]} || CF_SQL || pipedah || ${#CF_ALIAS[@]} || ${#CF_FETCHED[@]})) || [[ -n $ptext ]] || [[ $CF_LOOK == *" $p0 "* || ${W[0]} == [A-Za-z_]*=* || $p0 == *'$'* || $p0 == mk* || $p0 == python* || $p0 == pypy* || $p0 == lua* || $p0 == mkfs* || $p0 == mke2fs* || $p0 == *[$'\x03\x04']* || "${W[*]}" == *disableAllHooks* ]]; then
			CF_IN_FETCH=$pipefetch CF_IN_DAH=$pipedah CF_IN_TEXT=$ptext
			CF_RAW=${orig:olen-cs:cs-${#rest}}
			CF_PRAW=${orig:olen-ps:ps-${#rest}}
			cf_simple
		else
			CF_S_FETCH=0 CF_S_DAH=0 CF_S_STDIN='' CF_S_WRITES=0
		fi
		for (( ; hdmark < ${#HDD[@]}; hdmark++)); do
			HDC[hdmark]=$CF_S_STDIN
			HDW[hdmark]=$CF_S_WRITES
			HDP[hdmark]=$pl
		done
		[[ $CF_S_STDIN == s && $inpipe == 1 ]] && PLSH[pl]=1
	else
		CF_S_FETCH=0 CF_S_DAH=0 CF_S_STDIN='' CF_S_WRITES=0
	fi
	CF_SKEL+=$2
	W=() R=()
	cs=${#rest}
	if [[ $1 == pipe ]]; then
		((CF_S_FETCH)) && pipefetch=1
		((CF_S_DAH)) && pipedah=1
		inpipe=1
	else
		pipefetch=0 pipedah=0 inpipe=0 ps=${#rest}
		((pl++))
	fi
}

# cf_heredocs: rest starts at the line after a command line: consume the bodies of
# its here-documents. A body is data, except for a shell (or interpreter) that reads
# it as its program; an unquoted one still runs its $(...).
cf_heredocs() {
	((${#HDD[@]})) || return 0
	local k dl body x line
	for ((k = 0; k < ${#HDD[@]}; k++)); do
		dl=${HDD[k]}
		if [[ ${HDS[k]} == 1 ]]; then
			body=''
			while [[ -n $rest ]]; do
				((++CF_TICK & 31)) || cf_clock
				((CF_OVER)) && break
				line=${rest%%$'\n'*}
				rest=${rest:${#line}+1}
				x=${line#"${line%%[!$'\t']*}"}
				[[ $x == "$dl" ]] && break
				body+=$line$'\n'
			done
		elif [[ $rest == "$dl" || $rest == "$dl"$'\n'* ]]; then
			body=''
			rest=${rest:${#dl}+1}
		else
			x=${rest/$'\n'"$dl"$'\n'/$'\x05'}
			if [[ ${#x} != "${#rest}" && $rest != *$'\x05'* ]]; then
				body=${x%$'\x05'*}
				rest=${x##*$'\x05'}
			elif [[ $rest == *$'\n'"$dl" ]]; then
				body=${rest%$'\n'"$dl"}
				rest=''
			else
				body=$rest
				rest=''
			fi
		fi
		if [[ ${HDC[k]} == s || ${PLSH[${HDP[k]:-0}]} == 1 ]]; then
			cf_lex_string "$body"
		elif [[ ${HDQ[k]} == 0 ]]; then
			cf_scan_subs "$body"
		fi
		[[ ${HDC[k]} == p ]] && cf_code_check "$body" "the program sent to an interpreter"
		if [[ ${HDW[k]} == 1 && $body == *disableAllHooks* && $body =~ $CF_RE_DAH ]]; then
			cf_block disable-hooks "here-document written to a file" "it sets disableAllHooks, which would switch the guard and every hook off" "leave hooks enabled; ask the operator to change Claude Code settings"
		fi
	done
	HDD=() HDQ=() HDS=() HDC=() HDW=() HDP=()
	hdmark=0
	cs=${#rest} ps=${#rest}
}

# cf_code_check CODE HOW: inline code of an interpreter: it names a protected file, or
# it hands shell commands to system()/subprocess/child_process/backticks.
cf_code_check() {
	case $1 in
	*system* | *popen* | *subprocess* | *exec* | *spawn* | *child_process* | *qx* | *%x* | *passthru* | *'`'*) cf_code_shell "$1" ;;
	esac
	case $1 in
	*.claude/settings* | *.claude/hooks* | *authorized_keys* | *sudoers* | *'/etc/systemd'* | *claude-failover.sh*)
		cf_block protected-write "$2" "it names a protected file (Claude Code settings or hooks, SSH keys, sudoers, system units)" "change files inside the project with ordinary commands"
		;;
	esac
	[[ $1 == *$'\x03'* ]] && cf_block pipe-to-shell "$2" "it runs code downloaded from the network" "download to a file, read it, then run it"
	case $1 in *rmtree* | *rm_r* | *remove_dir* | *remove_tree* | *rmSync* | *rmdirSync* | *rm\(* | *removeSync* | *emptyDir* | *rimraf* | *delete_tree* | *remove_all* | *RemoveAll* | *deleteRecursively*) cf_code_rm "$1" "$2" ;; esac
	case $1 in *.bash* | *.zsh* | *.profile* | *.zprofile* | *.kshrc* | *config.fish* | *conf.d* | *crontab* | */etc/cron* | *.ssh* | */etc/profile* | *systemd*) cf_code_rc "$1" "$2" ;; esac
	case $1 in *fork*) cf_code_fork "$1" "$2" ;; esac
	return 0
}

# cf_code_rm CODE HOW: a recursive delete in code, aimed at /, a system folder or home.
cf_code_rm() {
	local re="expanduser|Path\.home|homedir|Dir\.home|ENV\[.HOME.\]|ENV\{HOME\}|environ(\.get)?[[(].HOME|getenv\(.HOME|UserHomeDir|home_dir|[\"'](~|/|/(etc|usr|var|boot|home|root|bin|lib|opt|srv)/?)[\"']"
	[[ $1 =~ $re ]] || return 0
	cf_block rm-root "$2" "it deletes a whole tree at ${BASH_REMATCH[0]} (the system, a system folder or the home folder)" "delete only a specific folder inside the project"
}

# cf_code_rc CODE HOW: code that writes a shell startup file, an SSH key file, cron or units.
cf_code_rc() {
	local names='\.(bashrc|bash_profile|bash_login|bash_aliases|bashrc\.d|zshrc|zshenv|zprofile|zlogin|profile|kshrc)|config\.fish|fish/conf\.d|authorized_keys|crontab|/etc/cron|/etc/profile|systemd/(system|user)'
	local writes="[\"'](a|w|a\+|w\+|wb|ab|>>?)[\"']|write|append|Write|Append|copy|symlink|rename|replace|O_WRONLY|O_APPEND|>>"
	[[ $1 =~ $names ]] || return 0
	local what=${BASH_REMATCH[0]}
	[[ $1 =~ $writes ]] || return 0
	cf_block protected-write "$2" "it writes $what, a protected file (shell startup files, SSH keys, cron, system units)" "change files inside the project with ordinary commands"
}

# cf_code_fork CODE HOW: fork in a loop.
cf_code_fork() {
	local l="[^"$'\n'"]*"
	[[ $1 =~ (while|loop|until|for[[:space:]]*\([[:space:]]*\;[[:space:]]*\;|itertools\.count|repeat|forever)${l}fork|fork${l}(while|until|loop|for[[:space:]]*\(\;\;\)) ]] || return 0
	cf_block fork-bomb "$2" "it forks in an endless loop: it exhausts the machine's processes" "nothing; do not run it"
}

# cf_code_shell CODE: the string literals of CODE, each and joined, judged as shell.
cf_code_shell() {
	local code=$1 lit='' seg q
	while [[ -n $code ]]; do
		((++CF_TICK & 31)) || cf_clock
		((CF_OVER)) && break
		seg=${code%%[\"\'\`]*}
		code=${code:${#seg}}
		[[ -z $code ]] && break
		q=${code:0:1}
		code=${code:1}
		seg=${code%%"$q"*}
		lit+=" $seg"
		code=${code:${#seg}+1}
		cf_quick "$seg" || cf_lex_string "$seg"
	done
	lit=${lit//$'\n'/ }
	cf_quick "$lit" || cf_lex_string "$lit"
}

# ---------------------------------------------------------------- one simple command
# W: the words, R: the redirections ("op\x1ftarget"). Helpers see cf_simple's locals.
cf_simple() {
	CF_S_FETCH=0 CF_S_STDIN='' CF_S_WRITES=0 CF_S_DAH=0
	local i=0 n=${#W[@]} p w hasout=0 sudo_cmd='' sudo_flags='' priv=''
	local -a A=()
	((${#R[@]})) && cf_redirs
	if [[ ${W[0]} == [A-Za-z_]*=* ]]; then
		cf_assigns || return 0
	fi
	while ((i < n)); do
		if [[ -n ${CF_ALIAS[${W[i]}]+x} ]]; then
			cf_split_into "${CF_ALIAS[${W[i]}]}" "$i" 1
			unset "CF_ALIAS[${W[i]}]" # an alias is not expanded inside itself
		fi
		[[ $CF_WRAPS == *" ${W[i]##*/} "* ]] || break
		cf_unwrap || return 0
	done
	if ((i >= n)); then
		[[ -n $priv ]] && cf_privblock
		return 0
	fi
	p=${W[i]##*/}
	if [[ $p == *'$'* ]]; then
		# an unknown variable in the program name may be empty: r${NOPE}m is rm
		while [[ $p =~ \$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?!$-]) ]]; do
			p=${p/"${BASH_REMATCH[0]}"/}
		done
	fi
	cf_ranfetched "${W[i]}"
	A=("${W[@]:i+1}")
	if [[ "${W[*]} ${R[*]}" == *$'\x0c'* ]]; then
		# output into >(bash): the program is what this command prints
		if cf_outtext; then cf_lex_string "$REPLY"; elif [[ -n $CF_IN_TEXT ]]; then cf_lex_string "$CF_IN_TEXT"; fi
	fi
	[[ "${W[*]} ${R[*]}" == *disableAllHooks* ]] && cf_dah
	((CF_IN_DAH)) && cf_dah
	((CF_SQL && !CF_SAWDB)) && cf_dbseen
	case $p in
	sh | bash | dash | zsh | ksh | mksh | ash | yash | fish | csh | tcsh | rbash) cf_shell ;;
	export | declare | typeset | readonly | local | read | for | select | set | alias) cf_setvars ;;
	taskset | systemd-run | parallel | script | tmux | screen | at | batch | awk | gawk | mawk | nawk | npx | bunx | pnpx | pnpm | yarn) cf_runner ;;
	docker | podman | nerdctl) cf_container ;;
	cryptsetup | machinectl | lvremove | vgremove | pvremove | zpool | zfs | mdadm | nvme | hdparm | badblocks | sg_format) cf_destroyer ;;
	eval) cf_eval_text "${A[*]}" ;;
	source | .) cf_source ;;
	python* | pypy* | node | nodejs | deno | bun | perl | ruby | php | lua* | Rscript | tclsh | wish | osascript | jshell | groovy | pwsh) cf_interp ;;
	rm | unlink | rmdir) cf_rm ;;
	dd) cf_dd ;;
	mkfs | mkfs.* | mke2fs | mkswap | mkntfs | mkdosfs | mk*fs | mk*fs.* | mkexfat*)
		cf_what
		cf_block mkfs "$REPLY" "$p formats a filesystem and wipes what was there" "work on files inside the project; disks are the operator's job"
		;;
	wipefs | blkdiscard | sgdisk | sfdisk | parted | fdisk) cf_diskutil ;;
	shred) cf_shred ;;
	git) cf_git ;;
	crontab) cf_crontab ;;
	chmod) cf_chmod ;;
	chown | chgrp | chattr | setfacl | touch | truncate | sponge | tee | vi | vim | nvim | nano | emacs | ed | ex | pico | micro | joe)
		cf_writer
		[[ $p == setfacl ]] && cf_setfacl
		[[ $p == vi || $p == vim || $p == nvim || $p == ex ]] && cf_vimcmds
		;;
	cp | mv | install | ln | rsync | scp) cf_copy ;;
	sed | yq) cf_sed ;;
	curl | wget | fetch | aria2c | http | https | xh | lynx | links) cf_fetch ;;
	base64 | base32 | basenc | openssl | xxd | uudecode) cf_decode ;;
	find) cf_find ;;
	cd | pushd) cf_cd ;;
	su | sudoedit | runuser | sg | ksu | calife)
		cf_what
		cf_block privilege "$REPLY" "$p runs commands as another user" "run it as the current user, or ask the operator"
		;;
	tar | bsdtar | unzip | 7z | cpio) cf_extract ;;
	kubectl | kubecolor | oc | helm | terraform | tofu | terragrunt) cf_infra ;;
	*[$'\x03\x04']*) cf_computed ;;
	claude)
		if ((CF_S_DAH)) || [[ $CF_RAW =~ $CF_RE_DAH ]]; then
			cf_what
			cf_block disable-hooks "$REPLY" "it starts claude with disableAllHooks" "leave hooks enabled"
		fi
		;;
	esac
	[[ -n $sudo_cmd ]] && cf_sudocheck
	[[ -n $priv ]] && cf_privblock
	return 0
}

# cf_runner: programs that run the program in their arguments.
cf_runner() {
	local j=0 nA=${#A[@]} w
	case $p in
	taskset)
		while [[ ${A[j]} == -* ]]; do
			[[ ${A[j]} == -p || ${A[j]} == --pid ]] && return 0
			((j++))
		done
		((j++)) # the mask or the cpu list
		cf_sub_simple "${A[@]:j}"
		;;
	systemd-run)
		while ((j < nA)) && [[ ${A[j]} == -* ]]; do
			w=${A[j]}
			case $w in
			--uid=0 | --uid=root | -pUser=root | --property=User=root) priv=systemd-run ;;
			--uid | -p | --property) [[ ${A[j + 1]} == 0 || ${A[j + 1]} == root || ${A[j + 1]} == User=root ]] && priv=systemd-run ;;
			esac
			case $w in
			-u | --unit | -p | --property | -E | --setenv | -M | --machine | -H | --host | --uid | --gid | --slice | --description | --working-directory | -t | --on-calendar | --on-active) ((j++)) ;;
			esac
			((j++))
		done
		cf_sub_simple "${A[@]:j}"
		;;
	parallel)
		local -a pcmd=() vals=()
		for ((j = 0; j < nA; j++)); do
			[[ ${A[j]} == ::: || ${A[j]} == :::: ]] && break
			[[ ${#pcmd[@]} == 0 && ${A[j]} == -* ]] && continue
			pcmd+=("${A[j]}")
		done
		vals=("${A[@]:j+1}")
		((${#vals[@]})) && cf_pick "${vals[@]}" && vals=("$REPLY")
		if [[ " ${pcmd[*]} " == *"{}"* ]]; then
			pcmd=("${pcmd[@]//"{}"/${vals[0]}}")
		else
			pcmd+=("${vals[@]}")
		fi
		local IFS=' '
		cf_lex_string "${pcmd[*]}"
		;;
	script)
		for ((j = 0; j < nA; j++)); do
			case ${A[j]} in
			-c | --command) cf_lex_string "${A[j + 1]}" ;;
			--command=*) cf_lex_string "${A[j]#*=}" ;;
			-[!-]*c) cf_lex_string "${A[j + 1]}" ;;
			esac
		done
		;;
	tmux | screen)
		# every argument that is not an option of tmux could be a shell command
		for ((j = 0; j < nA; j++)); do
			w=${A[j]}
			case $w in
			-[stnFcxyeLSfT]) ((j++)) ;;
			-* | Enter | C-m | KPEnter) ;;
			*) cf_quick "$w" || cf_lex_string "$w" ;;
			esac
		done
		;;
	at | batch)
		[[ " ${A[*]} " == *' -l '* || " ${A[*]} " == *' -r '* || " ${A[*]} " == *' -c '* ]] && return 0
		cf_stdin_prog s
		;;
	awk | gawk | mawk | nawk)
		while ((j < nA)) && [[ ${A[j]} == -* ]]; do
			[[ ${A[j]} == -f || ${A[j]} == --file ]] && return 0
			[[ ${A[j]} == -[vF] ]] && ((j++))
			((j++))
		done
		cf_code_check "${A[j]}" "the awk program"
		;;
	npx | bunx | pnpx | pnpm | yarn)
		[[ $p == pnpm || $p == yarn ]] && { [[ ${A[0]} == dlx || ${A[0]} == exec ]] || return 0; } && j=1
		while ((j < nA)) && [[ ${A[j]} == -* ]]; do
			[[ ${A[j]} == -p || ${A[j]} == --package ]] && ((j++))
			((j++))
		done
		w=${A[j]%@*}
		w=${w##*/}
		case $w in
		rimraf | del | del-cli | trash | trash-cli | rm) cf_sub_simple rm -r "${A[@]:j+1}" ;;
		*) cf_sub_simple "$w" "${A[@]:j+1}" ;;
		esac
		;;
	esac
	return 0
}

# cf_container: docker run -v /:/host gives the container the whole machine.
cf_container() {
	local j w h
	[[ " ${A[*]} " == *' run '* || " ${A[*]} " == *' create '* ]] || return 0
	for ((j = 0; j < ${#A[@]}; j++)); do
		w=${A[j]} h=''
		case $w in
		-v | --volume | --mount) w=${A[j + 1]} ;;
		-v?* | --volume=* | --mount=*) w=${w#-v} w=${w#--volume=} w=${w#--mount=} ;;
		*) continue ;;
		esac
		if [[ $w == *source=* || $w == *src=* ]]; then
			h=${w#*src=}
			[[ $w == *source=* ]] && h=${w#*source=}
			h=${h%%,*}
		else
			h=${w%%:*}
		fi
		[[ $h == /* || $h == '~'* || $h == .* ]] || continue
		if cf_rootish "$h" || cf_sysish "$h" || [[ $h == *docker.sock ]]; then
			cf_what
			cf_block host-mount "$REPLY" "mounting $h into a container gives it that part of the machine to change freely" "mount only a folder inside the project"
			return 0
		fi
		cf_check_write "$h" "mounting"
	done
}

cf_destroyer() {
	local a=" ${A[*]} " what=''
	case $p in
	cryptsetup) [[ $a == *' luksFormat '* || $a == *' erase '* || $a == *' luksErase '* || $a == *' reencrypt '* || $a == *' luksKillSlot '* ]] && what="cryptsetup ${A[0]}" ;;
	machinectl)
		if [[ $a == *' shell '* || $a == *' login '* ]]; then
			cf_what
			cf_block privilege "$REPLY" "machinectl shell opens a shell as root or another user" "run it as the current user, or ask the operator"
		fi
		return 0
		;;
	zpool | zfs) [[ $a == *' destroy '* || $a == *' labelclear '* ]] && what="$p destroy" ;;
	mdadm) [[ $a == *' --zero-superblock '* || $a == *' --create '* || $a == *' -C '* ]] && what=mdadm ;;
	nvme) [[ $a == *' format '* || $a == *' sanitize '* ]] && what="nvme ${A[0]}" ;;
	hdparm) [[ $a == *' --security-erase'* || $a == *' --trim-sector-ranges'* ]] && what=hdparm ;;
	badblocks) [[ $a == *' -w'* || $a == *' -'[a-z]*w* ]] && what="badblocks -w" ;;
	*) what=$p ;;
	esac
	[[ -n $what ]] || return 0
	cf_what
	cf_block disk-write "$REPLY" "$what destroys disks, volumes or their data" "work on image files inside the project; disks are the operator's job"
}

# cf_computed: the program name comes from a substitution: judge it as rm could be.
cf_computed() {
	local a r=0
	for a in "${A[@]}"; do
		[[ $a == -[!-]*[rR]* || $a == -[rR]* || $a == --recursive ]] && r=1
	done
	((r)) || return 0
	for a in "${A[@]}"; do
		[[ $a == -* ]] && continue
		if cf_rootish "$a"; then
			cf_what
			cf_block rm-root "$REPLY" "a command named at run time, with a recursive flag, aimed at $a" "name the program plainly and remove only a specific folder inside the project"
			return 0
		fi
	done
}

cf_redirs() {
	local r op tgt
	for r in "${R[@]}"; do
		op=${r%%$'\x1f'*}
		tgt=${r#*$'\x1f'}
		case $op in
		'>' | '>>' | '>|' | '<>')
			case $tgt in
			/dev/null | /dev/stdout | /dev/stderr | /dev/fd/* | /dev/tty | /dev/zero) ;;
			*)
				hasout=1
				CF_S_WRITES=1
				cf_check_write "$tgt" "writing to"
				;;
			esac
			;;
		esac
	done
}

# cf_pick WORD... -> REPLY: the value a loop or a read may take that is most dangerous
# (a root, system or home path, a protected file or a disk), else the first.
cf_pick() {
	local w
	REPLY=$1
	for w in "$@"; do
		cf_unknown "$w" && continue
		if cf_rootish "$w" || cf_sysish "$w" || { cf_norm "$w" && { cf_prot "$REPLY" || cf_blockdev "$REPLY"; }; }; then
			REPLY=$w
			return 0
		fi
		REPLY=$1
	done
	return 0
}

# cf_setvars: export/declare/readonly/local NAME=value, read NAME <<< word, for NAME in
# words, set -- words, alias NAME=value: values later words of this command may use.
cf_setvars() {
	local w nm r txt
	local -a vals
	case $p in
	for | select)
		nm=${A[0]}
		[[ ${A[1]} == in && $nm =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 0
		vals=("${A[@]:2}")
		[[ ${vals[${#vals[@]} - 1]} == 'do' ]] && unset "vals[$((${#vals[@]} - 1))]"
		((${#vals[@]})) || return 0
		cf_pick "${vals[@]}"
		cf_setvar "$nm" "$REPLY"
		;;
	read)
		txt=$CF_IN_TEXT
		for r in "${R[@]}"; do
			[[ ${r%%$'\x1f'*} == '<<<' ]] && txt=${r#*$'\x1f'}
		done
		[[ -n $txt ]] || return 0
		vals=()
		for w in "${A[@]}"; do
			[[ $w == -* ]] || vals+=("$w")
		done
		((${#vals[@]})) || return 0
		if ((${#vals[@]} == 1)); then
			cf_setvar "${vals[0]}" "$txt"
		else
			local IFS=$' \t\n'
			local -a parts
			# shellcheck disable=SC2206 # split on purpose; globbing is off (set -f)
			parts=($txt)
			cf_pick "${parts[@]}"
			for w in "${vals[@]}"; do cf_setvar "$w" "$REPLY"; done
		fi
		;;
	set)
		[[ ${A[0]} == -- ]] || return 0
		CF_POS=(set "${A[@]:1}")
		CF_HAVEPOS=1
		;;
	alias)
		for w in "${A[@]}"; do
			[[ $w == [A-Za-z_]*=* ]] && CF_ALIAS[${w%%=*}]=${w#*=}
		done
		;;
	*)
		for w in "${A[@]}"; do
			[[ $w == [A-Za-z_]*=* ]] || continue
			cf_setvar "${w%%=*}" "${w#*=}"
		done
		;;
	esac
	return 0
}

cf_setvar() { # NAME VALUE
	[[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 0
	if cf_unknown "$2"; then
		unset "CF_VARS[$1]"
	else
		CF_VARS[$1]=$2
	fi
}

# cf_assigns: leading NAME=value words. Returns 1 (and records them) when there is
# nothing else; sets i past them otherwise.
cf_assigns() {
	local w nm
	while ((i < n)); do
		w=${W[i]}
		[[ $w == [A-Za-z_]*=* ]] || break
		nm=${w%%=*}
		nm=${nm%+}
		[[ $nm == *[!A-Za-z0-9_]* ]] && break
		((i++))
	done
	((i < n)) && return 0
	for w in "${W[@]}"; do
		cf_setvar "${w%%=*}" "${w#*=}"
	done
	return 1
}

# cf_unwrap: W[i] is a wrapper (sudo, env, nice, xargs, if, ...): move i to the
# command it runs. Returns 1 when there is nothing more to judge.
cf_unwrap() {
	local w wp=${W[i]##*/}
	((i++))
	case $wp in
	chroot) ((i++)) ;;
	exec | time | nice | ionice | stdbuf | setsid | doas | pkexec | run0 | timeout | xargs)
		[[ $wp == doas || $wp == pkexec || $wp == run0 ]] && [[ -z $priv ]] && priv=$wp
		while ((i < n)) && [[ ${W[i]} == -* ]]; do
			case $wp:${W[i]} in
			exec:-a | time:-[fo] | nice:-n | nice:--adjustment | ionice:-[cnp] | stdbuf:-[ioe] | doas:-[uC] | pkexec:--user | run0:-u | timeout:-[sk] | timeout:--signal | timeout:--kill-after | xargs:-[ILnPsdEa]) ((i++)) ;;
			esac
			((i++))
		done
		[[ $wp == timeout ]] && ((i++))
		[[ $wp == xargs ]] && cf_xargs_input
		;;
	env)
		while ((i < n)); do
			w=${W[i]}
			case $w in
			--)
				((i++))
				break
				;;
			-u | -C | --unset | --chdir) ((i += 2)) ;;
			-S | --split-string)
				cf_split_into "${W[i + 1]}" $((i + 1)) 1
				((i++))
				;;
			--split-string=*)
				cf_split_into "${w#*=}" $((i + 1)) 0
				((i++))
				;;
			-* | [A-Za-z_]*=*) ((i++)) ;;
			*) break ;;
			esac
		done
		;;
	command)
		[[ ${W[i]} == -p ]] && ((i++))
		[[ ${W[i]} == -[vV] ]] && return 1
		;;
	flock)
		while ((i < n)) && [[ ${W[i]} == -* ]]; do
			case ${W[i]} in
			-c | --command)
				cf_lex_string "${W[i + 1]}"
				return 1
				;;
			-[wEo] | --timeout | --conflict-exit-code) ((i++)) ;;
			esac
			((i++))
		done
		((i++))
		if [[ ${W[i]} == -c ]]; then
			cf_lex_string "${W[i + 1]}"
			return 1
		fi
		;;
	watch)
		while ((i < n)) && [[ ${W[i]} == -* ]]; do
			[[ ${W[i]} == -[nd] || ${W[i]} == --interval ]] && ((i++))
			((i++))
		done
		local IFS=' '
		cf_lex_string "${W[*]:i}"
		return 1
		;;
	sudo) cf_sudo || return 1 ;;
	esac
	return 0
}

# cf_xargs_input: literal input of xargs (echo / | xargs rm -rf, xargs rm <<< /) joins
# its command's words, or replaces {} under -I.
cf_xargs_input() {
	local txt=$CF_IN_TEXT r j
	local -a in
	for r in "${R[@]}"; do
		[[ ${r%%$'\x1f'*} == '<<<' ]] && txt=${r#*$'\x1f'}
	done
	[[ -n $txt ]] || return 0
	local IFS=$' \t\n'
	# shellcheck disable=SC2206 # split on purpose; globbing is off (set -f)
	in=($txt)
	if [[ " ${W[*]:0:i} " == *' -I '* ]]; then
		for ((j = i; j < n; j++)); do
			[[ ${W[j]} == *'{}'* ]] && W[j]=${W[j]//'{}'/${in[0]}}
		done
	else
		W+=("${in[@]}")
		n=${#W[@]}
	fi
}

cf_sudo() {
	local w
	while ((i < n)); do
		w=${W[i]}
		case $w in
		--)
			((i++))
			break
			;;
		-[ugCDhprtTUc] | --user | --group | --close-from | --chdir | --host | --prompt | --role | --type | --command-timeout | --other-user | --login-class) ((i += 2)) ;;
		--login | --shell | --edit)
			sudo_flags+=${w:2:1}
			[[ $w == --login ]] && sudo_flags+=i
			((i++))
			;;
		--*) ((i++)) ;;
		-*)
			sudo_flags+=${w#-}
			((i++))
			;;
		*) break ;;
		esac
	done
	if ((i >= n)) || [[ $sudo_flags == *e* ]]; then
		if [[ $sudo_flags == *[ise]* ]]; then
			cf_what
			cf_block sudo "$REPLY" "sudo -i, -s or -e opens a root shell or edits files as root" "run the command as the current user, or ask the operator"
		fi
		return 1
	fi
	sudo_cmd=${W[i]##*/}
	return 0
}

cf_sudocheck() {
	case $sudo_cmd in
	systemctl | journalctl | cp | install | apt | apt-get) ;;
	*)
		cf_what
		cf_block sudo "$REPLY" "sudo $sudo_cmd is outside the allowlist (systemctl, journalctl, cp, install, apt, apt-get)" "run it without sudo, or ask the operator to do it"
		;;
	esac
}

cf_privblock() {
	cf_what
	cf_block privilege "$REPLY" "$priv runs commands as another user" "run it as the current user, or ask the operator"
}

# cf_split_into TEXT START SKIP: env -S: TEXT's words go in W at START, replacing SKIP words.
cf_split_into() {
	local -a extra
	local IFS=$' \t'
	# shellcheck disable=SC2206 # env -S splits on blanks; globbing is off (set -f)
	extra=($1)
	W=("${W[@]:0:$2}" "${extra[@]}" "${W[@]:$2+$3}")
	n=${#W[@]}
}

# cf_dah: disableAllHooks is in this command (or piped into it).
cf_dah() {
	if [[ "${W[*]} ${R[*]}" =~ $CF_RE_DAH ]]; then
		CF_S_DAH=1
	elif ((!CF_IN_DAH)); then
		return 0
	fi
	case $p in
	grep | egrep | fgrep | rg | ag | ack | cat | echo | printf | less | more | head | tail | wc | diff | git | jq | ls | stat | file)
		((hasout)) || return 0
		;;
	esac
	cf_what
	cf_block disable-hooks "$REPLY" "it sets disableAllHooks, which would switch the guard and every hook off" "leave hooks enabled; ask the operator to change Claude Code settings"
}

cf_dbseen() {
	local w
	for w in "${W[@]:i}"; do
		case ${w##*/} in
		psql | mysql | mariadb | sqlite3 | sqlite | sqlcmd | clickhouse-client | clickhouse | duckdb | cockroach | mongosh | mongo | cqlsh | snowsql | usql | pgcli | mycli | litecli | bq | dbshell | dbconsole | isql | osql | sqlplus | trino | presto | beeline | spark-sql)
			CF_SAWDB=1
			return 0
			;;
		esac
	done
}

cf_eval_text() {
	if [[ $1 == *$'\x03'* ]]; then
		cf_what
		cf_block pipe-to-shell "$REPLY" "it runs code downloaded from the network" "download it to a file inside the project, read it, then run it"
	fi
	cf_lex_string "$1"
}

cf_source() {
	case ${A[0]} in
	/dev/stdin | - | /proc/self/fd/0 | /dev/fd/0) cf_stdin_prog s ;;
	*) cf_script_arg "${A[0]}" ;;
	esac
	if [[ ${A[0]} == *$'\x03'* ]] || { ((CF_IN_FETCH)) && [[ ${A[0]} == /dev/stdin || ${A[0]} == - || ${A[0]} == /proc/self/fd/0 ]]; }; then
		cf_what pipe
		cf_block pipe-to-shell "$REPLY" "it runs a script downloaded from the network" "download it to a file inside the project, read it, then run it"
	fi
}

# cf_stdin_prog KIND: the program of a shell or interpreter comes from its stdin.
cf_stdin_prog() {
	local r
	CF_S_STDIN=$1
	if ((CF_IN_FETCH)); then
		cf_what pipe
		cf_block pipe-to-shell "$REPLY" "piping downloaded or decoded text into $p runs code nobody has read" "download it to a file inside the project, read it, then run it"
	fi
	if [[ -n $CF_IN_TEXT ]]; then
		if [[ $1 == s ]]; then
			cf_lex_string "$CF_IN_TEXT"
		else
			cf_code_check "$CF_IN_TEXT" "the program piped into $p"
		fi
	fi
	for r in "${R[@]}"; do
		case ${r%%$'\x1f'*} in
		'<<<')
			if [[ $1 == s ]]; then
				cf_eval_text "${r#*$'\x1f'}"
			else
				cf_code_check "${r#*$'\x1f'}" "the program sent to $p"
			fi
			;;
		'<')
			if [[ $r == *$'\x03'* ]]; then
				cf_what
				cf_block pipe-to-shell "$REPLY" "it runs a script downloaded from the network" "download it to a file inside the project, read it, then run it"
			fi
			;;
		esac
	done
}

cf_script_arg() { # $1: the script argument of a shell or interpreter
	[[ $1 == *$'\x0b'* ]] && cf_lex_string "${1#*$'\x0b'}"
	cf_ranfetched "$1"
	if [[ $1 == *$'\x03'* ]]; then
		cf_what
		cf_block pipe-to-shell "$REPLY" "it runs a script downloaded from the network" "download it to a file inside the project, read it, then run it"
	fi
}

# cf_ranfetched WORD: WORD names a file this command downloaded: running it runs code
# nobody has read.
cf_ranfetched() {
	((${#CF_FETCHED[@]})) || return 0
	cf_unknown "$1" && return 0
	cf_norm "$1"
	[[ -n ${CF_FETCHED[$REPLY]+x} ]] || return 0
	cf_what
	cf_block pipe-to-shell "$REPLY" "it runs a file downloaded in the same command, before anyone read it" "download it in one call, read it, then run it in another"
}

cf_shell() {
	local j=0 w hasc=0 hass=0 nA=${#A[@]}
	while ((j < nA)); do
		w=${A[j]}
		case $w in
		--)
			((j++))
			break
			;;
		--rcfile | --init-file | -o | +o | -O | +O) ((j += 2)) ;;
		--*) ((j++)) ;;
		-*c* | +*c*)
			hasc=1
			((j++))
			;;
		-*s*)
			hass=1
			((j++))
			;;
		-* | +*) ((j++)) ;;
		*) break ;;
		esac
	done
	if ((hasc)); then
		local -a CF_POS=("${A[@]:j+1}")
		local CF_HAVEPOS=1
		cf_eval_text "${A[j]}"
	elif ((!hass && j < nA)) && [[ ${A[j]} != - && ${A[j]} != /dev/stdin ]]; then
		cf_script_arg "${A[j]}"
	else
		cf_stdin_prog s
	fi
}

cf_interp() {
	local j=0 w nA=${#A[@]} code='' hascode=0 inplace=0
	while ((j < nA)); do
		w=${A[j]}
		case $p:$w in
		*:--)
			((j++))
			break
			;;
		perl:-[IMm]?*) ((j++)) ;;
		python*:-c | pypy*:-c | node*:-e | node*:-p | node*:--eval | node*:--print | deno:eval | bun:-e | bun:--eval | perl:-e | perl:-E | ruby:-e | php:-r | lua*:-e | Rscript:-e | osascript:-e | pwsh:-c | pwsh:-Command | tclsh:-c | perl:-*e | perl:-*E | ruby:-[!-]*e | python*:-[!-]*c | pypy*:-[!-]*c | node*:-[!-]*[ep])
			[[ ($p == perl || $p == ruby) && $w == -*i* ]] && inplace=1
			code+=${A[j + 1]}$'\n'
			hascode=1
			((j += 2))
			;;
		python*:-m | pypy*:-m)
			hascode=1
			break
			;;
		python*:-[WXQ] | node*:-r | node*:--require | ruby:-[rI] | perl:-[IM]) ((j += 2)) ;;
		perl:-*i* | ruby:-*i*)
			inplace=1
			((j++))
			;;
		*:-*) ((j++)) ;;
		*) break ;;
		esac
	done
	if ((hascode)); then
		[[ -n $code ]] && cf_code_check "$code" "inline code of $p"
		if ((inplace)); then
			for w in "${A[@]:j}"; do cf_check_write "$w" "$p -i on"; done
		fi
	elif ((j < nA)) && [[ ${A[j]} != - && ${A[j]} != /dev/stdin ]]; then
		cf_script_arg "${A[j]}"
	else
		cf_stdin_prog p
	fi
}

cf_rm() {
	local r=0 e=0 npr=0 a
	local -a tg=()
	for a in "${A[@]}"; do
		if ((!e)); then
			case $a in
			--)
				e=1
				continue
				;;
			--r | --re | --rec* ) cf_lopt "$a" --recursive 3 && r=1 ;;
			--n | --no | --no-* ) cf_lopt "$a" --no-preserve-root 3 && npr=1 ;;
			-?*) [[ $a != --* && $a == *[rR]* ]] && r=1 ;;
			*) tg+=("$a") ;;
			esac
			continue
		fi
		tg+=("$a")
	done
	[[ $p == rmdir ]] && r=0
	for a in "${tg[@]}"; do
		if ((r || npr)) && cf_rootish "$a"; then
			cf_what
			cf_block rm-root "$REPLY" "a recursive rm of $a would wipe the system, the home folder or the whole project" "remove only a specific folder inside the project, e.g. rm -rf ./build"
		fi
		cf_check_remove "$a" "removing"
	done
	if ((npr)); then
		cf_what
		cf_block rm-root "$REPLY" "--no-preserve-root is only ever needed to wipe /" "remove only a specific folder inside the project, e.g. rm -rf ./build"
	fi
}

cf_dd() {
	local w
	for w in "${A[@]}"; do
		[[ $w == of=* ]] && cf_check_write "${w#of=}" "dd writing to"
	done
}

cf_shred() {
	local w
	for w in "${A[@]}"; do
		[[ $w == -* ]] && continue
		cf_check_write "$w" "shred of"
		if cf_sysish "$w"; then
			cf_what
			cf_block disk-write "$REPLY" "shred of $w destroys system or home data beyond recovery" "remove only files inside the project (rm ./file)"
		fi
	done
}

cf_diskutil() {
	local w ro=0 all=0
	for w in "${A[@]}"; do
		case $p:$w in
		wipefs:-a | wipefs:--all | wipefs:-o | wipefs:--offset* | wipefs:-[!-]*a*) all=1 ;;
		sfdisk:-l | sfdisk:--list | sfdisk:-d | sfdisk:--dump | sfdisk:-s | sfdisk:--show-size | sfdisk:-J | sfdisk:--json | sfdisk:-V | sfdisk:--verify) ro=1 ;;
		sgdisk:-p | sgdisk:--print | sgdisk:-v | sgdisk:--verify | sgdisk:-i* | sgdisk:--info*) ro=1 ;;
		fdisk:-l | fdisk:--list | parted:-l | parted:--list | parted:print) ro=1 ;;
		esac
	done
	case $p in
	wipefs) ((all)) || return 0 ;;
	sfdisk | sgdisk | fdisk | parted) ((ro)) && return 0 ;;
	esac
	cf_what
	cf_block disk-write "$REPLY" "$p rewrites partition tables or wipes filesystem signatures" "work on image files inside the project; disks are the operator's job"
}

cf_writer() {
	local w
	for w in "${A[@]}"; do
		[[ $w == -* ]] && continue
		cf_check_write "$w" "$p on"
	done
	[[ $p == tee || $p == sponge ]] && CF_S_WRITES=1
	return 0
}

# cf_setfacl: an ACL that lets others (or everyone) write a system or home path.
cf_setfacl() {
	local j spec='' a
	for ((j = 0; j < ${#A[@]}; j++)); do
		case ${A[j]} in
		-m | --modify | -M | --set) spec+=",${A[j + 1]}" ;;
		--modify=* | --set=*) spec+=",${A[j]#*=}" ;;
		-[!-]*m) spec+=",${A[j + 1]}" ;;
		esac
	done
	[[ $spec =~ ,[^,]*:[rwxX-]*w[rwxX-]*(,|$) ]] || return 0
	for a in "${A[@]}"; do
		[[ $a == -* || $spec == *",$a" || $spec == *",$a,"* ]] && continue
		cf_wwcheck "$a" o+w
	done
}

# cf_vimcmds: vim -c '!…', +'!…', --cmd: an Ex command that runs a shell command.
cf_vimcmds() {
	local j c
	for ((j = 0; j < ${#A[@]}; j++)); do
		c=''
		case ${A[j]} in
		-c | --cmd) c=${A[j + 1]} ;;
		+?*) c=${A[j]#+} ;;
		esac
		c=${c#"${c%%[!: ]*}"}
		if [[ $c == '!'* ]]; then
			cf_lex_string "${c#!}"
		elif [[ $c == *system\(* || $c == *'!'* ]]; then
			cf_code_shell "$c"
		fi
	done
}

cf_copy() {
	local j a t='' e=0 dest s nA=${#A[@]}
	local -a args=()
	for ((j = 0; j < nA; j++)); do
		a=${A[j]}
		if ((!e)); then
			case $p:$a in
			*:--)
				e=1
				continue
				;;
			*:-t | *:--target-directory)
				t=${A[j + 1]}
				((j++))
				continue
				;;
			*:--target-directory=*)
				t=${a#*=}
				continue
				;;
			*:-S | *:--suffix | install:-[mog] | install:--mode | install:--owner | install:--group | rsync:-e | rsync:--rsh | rsync:-f | rsync:--filter | rsync:--exclude | rsync:--include | scp:-[PiFlcJoS])
				((j++))
				continue
				;;
			*:-*) continue ;;
			esac
		fi
		args+=("$a")
	done
	if [[ $p == install ]]; then
		cf_install_mode
		[[ " ${A[*]} " == *' -d '* || " ${A[*]} " == *' --directory '* ]] && for s in "${args[@]}"; do cf_wwcheck "$s" "$CF_IMODE"; done
	fi
	if [[ -n $t ]]; then
		dest=$t
	elif ((${#args[@]} >= 2)); then
		dest=${args[${#args[@]} - 1]}
		unset "args[$((${#args[@]} - 1))]"
	elif ((${#args[@]} == 1)) && [[ $p == ln ]]; then
		dest=.
	else
		return 0
	fi
	[[ ($p == scp || $p == rsync) && $dest == [!/]*:* ]] && return 0
	if [[ $p == rsync && " ${A[*]}" == *' --del'* ]] && cf_rootish "$dest/*"; then
		cf_what
		cf_block rm-root "$REPLY" "rsync --delete into $dest deletes everything there that the source lacks" "sync into a specific folder inside the project"
	fi
	[[ $p == install ]] && cf_wwcheck "$dest" "$CF_IMODE"
	cf_check_write "$dest" "$p to"
	for s in "${args[@]}"; do
		[[ $p == mv ]] && cf_check_remove "$s" "moving"
		[[ $p == ln ]] && cf_link "$s" "$dest" "${#args[@]}"
		s=${s%/}
		cf_check_write "${dest%/}/${s##*/}" "$p to"
	done
}

cf_install_mode() { # -> CF_IMODE: the -m of install
	local j
	CF_IMODE=''
	for ((j = 0; j < ${#A[@]}; j++)); do
		case ${A[j]} in
		-m | --mode) CF_IMODE=${A[j + 1]} ;;
		--mode=*) CF_IMODE=${A[j]#*=} ;;
		-m?*) CF_IMODE=${A[j]#-m} ;;
		esac
	done
}

# cf_wwcheck PATH MODE: a world-writable MODE on a system or home path.
cf_wwcheck() {
	local ww=0 c who ops
	[[ -n $2 ]] || return 0
	if [[ $2 =~ ^[0-7]+$ ]]; then
		[[ ${2: -1} == [2367] ]] && ww=1
	else
		local IFS=,
		for c in $2; do
			who=${c%%[-+=]*}
			ops=${c:${#who}}
			[[ $who == *[oa]* && $ops =~ $CF_RE_WW ]] && ww=1
		done
	fi
	((ww)) && cf_sysish "$1" || return 0
	cf_what
	cf_block chmod-world "$REPLY" "mode $2 makes $1 writable by every user" "use a narrower mode (755 or 644), or a path inside the project"
}

# cf_link TARGET DEST COUNT: ln to a protected file lets later writes reach it: blocked;
# any other link is remembered, so later words in this command resolve through it.
cf_link() {
	local t=$1 l=$2
	cf_check_write "$t" "linking to"
	cf_unknown "$t" && return 0
	cf_unknown "$l" && return 0
	[[ $t == /* ]] || t=${l%/*}/$t
	[[ $l == */* ]] || t=$1
	((${3} > 1)) || [[ $l == */ ]] && l=${l%/}/${1##*/}
	cf_norm "$t"
	t=$REPLY
	cf_norm "$l"
	CF_LINKS[$REPLY]=$t
}

# cf_sed_exec SCRIPT: GNU sed's e command (1e cmd) and s///e run shell commands.
cf_sed_exec() {
	local re='(^|[;{}[:space:]]|[0-9$/])e[[:space:]]+([^;}]+)' d x
	[[ $1 =~ $re ]] && cf_lex_string "${BASH_REMATCH[2]}"
	[[ $1 == s?* ]] || return 0
	d=${1:1:1}
	[[ $d == [[:alnum:][:space:]\\] ]] && return 0
	x=${1:2}
	[[ $x == *"$d"*"$d"*e* ]] || return 0
	local IFS=$d
	local -a f
	# shellcheck disable=SC2206 # split on the delimiter; globbing is off (set -f)
	f=($x)
	[[ ${f[2]} == *e* && ${f[2]} != *[!gpiImMe0-9wf]* ]] && cf_lex_string "${f[1]}"
}

cf_sed() {
	local j a script=0 nA=${#A[@]} inplace=0
	for a in "${A[@]}"; do
		[[ $a == -i* || $a == -[!-]*i* || $a == --in-place* || $a == --inplace ]] && inplace=1
		[[ $p == sed && $a != -* ]] && cf_sed_exec "$a"
	done
	((inplace)) || return 0
	for ((j = 0; j < nA; j++)); do
		a=${A[j]}
		case $a in
		-e | -f | --expression | --file)
			script=1
			((j++))
			;;
		--expression=* | --file=*) script=1 ;;
		-*) ;;
		*)
			if ((!script)); then
				script=1
			else
				cf_check_write "$a" "$p -i on"
			fi
			;;
		esac
	done
}

cf_fetch() {
	local j a dir='' out='' url=''
	CF_S_FETCH=1
	((CF_NFETCH++))
	for ((j = 0; j < ${#A[@]}; j++)); do
		a=${A[j]}
		case $p:$a in
		curl:-O | curl:--remote-name | *:-[!-]*O) ;;
		*:-o | *:-O | *:--output | *:--output-document) out=${A[++j]} ;;
		*:--output=* | *:--output-document=*) out=${a#*=} ;;
		curl:-o?*) out=${a#-o} ;;
		curl:-[!-]*o) out=${A[++j]} ;;
		wget:-P | *:--directory-prefix | curl:--output-dir | aria2c:-d | aria2c:--dir) dir=${A[++j]} ;;
		wget:-P?*) dir=${a#-P} ;;
		*:--directory-prefix=* | *:--output-dir=* | *:--dir=*) dir=${a#*=} ;;
		*://*) url=$a ;;
		esac
	done
	[[ -z $out && -n $url ]] && out=${url%%[?#]*} && out=${out##*/}
	[[ -n $dir ]] && cf_check_write "$dir" "downloading into" && cf_check_write "$dir/x" "downloading into"
	[[ -n $out && $out != - ]] || return 0
	[[ -n $dir && $out != /* ]] && out=$dir/$out
	cf_check_write "$out" "downloading to"
	cf_unknown "$out" && return 0
	cf_norm "$out"
	CF_FETCHED[$REPLY]=1
}

cf_decode() {
	case " ${A[*]} " in
	*' -d '* | *' --decode '* | *' -D '* | *' -r '* | *' -'[a-z]*d' '* | *' enc '*-d*) CF_S_FETCH=1 ;;
	esac
	[[ $p == uudecode ]] && CF_S_FETCH=1
	((CF_S_FETCH)) && ((CF_NFETCH++))
	return 0
}

cf_extract() {
	local j
	for ((j = 0; j < ${#A[@]}; j++)); do
		case ${A[j]} in
		--checkpoint-action=exec=* | --to-command=* | --use-compress-program=* | --info-script=* | --new-volume-script=* | --rsh-command=*) cf_lex_string "${A[j]#*=}" && [[ ${A[j]} == --checkpoint-action=* ]] && cf_lex_string "${A[j]#*=exec=}" ;;
		-I | --use-compress-program | --to-command | -F | --info-script) [[ $p == tar ]] && cf_lex_string "${A[j + 1]}" ;;
		-C | --directory | -d) cf_check_write "${A[j + 1]}" "extracting into" ;;
		--directory=*) cf_check_write "${A[j]#*=}" "extracting into" ;;
		esac
	done
}

cf_infra() {
	local j v=''
	for ((j = 0; j < ${#A[@]}; j++)); do
		case ${A[j]} in
		-n | --namespace | --context | --kubeconfig | --cluster | --user | -s | --server | --as | --token | --kube-context | --repository-config) ((j++)) ;;
		-*) ;;
		*)
			v=${A[j]}
			break
			;;
		esac
	done
	cf_what
	case $p:$v in
	kubectl:delete | kubecolor:delete | oc:delete) cf_warn kubectl-delete "$REPLY" ;;
	helm:uninstall | helm:delete | helm:del | helm:un) cf_warn helm-uninstall "$REPLY" ;;
	terraform:destroy | tofu:destroy | terragrunt:destroy) cf_warn terraform-destroy "$REPLY" ;;
	terraform:apply | tofu:apply | terragrunt:apply) [[ " ${A[*]} " == *' -destroy '* ]] && cf_warn terraform-destroy "$REPLY" ;;
	esac
	return 0
}

# cf_lopt WORD LONG MIN: WORD is LONG or a prefix of it GNU tools and git accept.
cf_lopt() {
	((${#1} >= $3)) && [[ $2 == "$1"* ]]
}

# cf_gitcfg -> GC: the "key=value" settings of this git call: -c, GIT_CONFIG_COUNT/KEY_n/
# VALUE_n and GIT_CONFIG_PARAMETERS, in this command or set (export) earlier in it.
cf_gitcfg() {
	local w k c=0 x
	local -A E=()
	for k in "${!CF_VARS[@]}"; do [[ $k == GIT_CONFIG_* ]] && E[$k]=${CF_VARS[$k]}; done
	for w in "${W[@]:0:i}"; do [[ $w == GIT_CONFIG_*=* ]] && E[${w%%=*}]=${w#*=}; done
	c=${E[GIT_CONFIG_COUNT]-0}
	[[ $c =~ ^[0-9]{1,2}$ ]] || c=0
	for ((k = 0; k < c; k++)); do GC+=("${E[GIT_CONFIG_KEY_$k]-}=${E[GIT_CONFIG_VALUE_$k]-}"); done
	x=${E[GIT_CONFIG_PARAMETERS]-}
	x=${x//\'/}
	[[ -n $x ]] && GC+=("$x")
	for ((k = 0; k < ${#A[@]}; k++)); do
		[[ ${A[k]} == -c ]] && GC+=("${A[k + 1]}")
		[[ ${A[k]} == -c?* ]] && GC+=("${A[k]#-c}")
		[[ ${A[k]} == -* || ${A[k]} == -c ]] || break
		[[ ${A[k]} == -[cC] || ${A[k]} == --git-dir || ${A[k]} == --work-tree || ${A[k]} == --namespace ]] && ((k++))
	done
}

# cf_gitrisky KEY VALUE: a setting that makes a later push force, mirror or run a shell.
cf_gitrisky() {
	local k=${1,,} v=$2
	case $k in
	remote.*.mirror) [[ ${v,,} == true || ${v,,} == yes || $v == 1 || $v == on ]] && return 0 ;;
	remote.*.push) [[ $v == +* ]] && return 0 ;;
	alias.*)
		[[ $v == '!'* ]] && { cf_lex_string "${v:1}"; return 1; }
		[[ " $v " == *' push '* ]] && [[ " $v " =~ \ (--force|--mirror|-[a-z]*f[a-z]*|\+[^ ]+|--delete|:[^ ]+)\  ]] && return 0
		;;
	esac
	return 1
}

cf_git() {
	local j=0 a sub nA=${#A[@]} hard=0 ref='' kv del=0 k
	local -a GC=()
	while ((j < nA)); do
		case ${A[j]} in
		-C | -c | --git-dir | --work-tree | --namespace | --super-prefix | --config-env) ((j += 2)) ;;
		-*) ((j++)) ;;
		*) break ;;
		esac
	done
	cf_gitcfg
	sub=${A[j]}
	((j++))
	for kv in "${GC[@]}"; do
		k=${kv%%=*}
		if [[ ${k,,} == "alias.$sub" ]]; then
			local IFS=$' \t'
			if [[ ${kv#*=} == '!'* ]]; then
				cf_lex_string "${kv#*=!}"
				return 0
			fi
			# shellcheck disable=SC2206 # an alias is split into words; globbing is off (set -f)
			A=(${kv#*=} "${A[@]:j}")
			IFS=$' \t\n'
			nA=${#A[@]} j=1 sub=${A[0]}
		fi
		if [[ $sub == push ]] && cf_gitrisky "$k" "${kv#*=}"; then
			cf_what
			cf_block force-push "$REPLY" "the setting $kv turns this push into a force or mirror push" "use git push --force-with-lease on your own branch, or push to a new branch"
		fi
	done
	case $sub in
	push)
		for a in "${A[@]:j}"; do
			case $a in
			--force-with-lease* | --force-if-includes | --follow-tags) ;;
			--mirror | -f* | -[!-]*f* | +?*)
				cf_pushblock "$a"
				;;
			--*)
				if cf_lopt "$a" --force 5 || cf_lopt "$a" --mirror 4; then cf_pushblock "$a"; fi
				cf_lopt "$a" --delete 4 && del=1
				;;
			-d | -[!-]*d*) del=1 ;;
			esac
		done
		for a in "${A[@]:j}"; do
			[[ $a == -* ]] && continue
			if { ((del)) || [[ $a == :* ]]; } && [[ ${a#:} =~ ^(refs/heads/)?(main|master|production)$ ]]; then
				cf_what
				cf_block force-push "$REPLY" "deleting the remote branch ${a#:} destroys it for everyone, as a force push would" "delete only your own branches; ask the operator to remove a protected one"
			fi
		done
		;;
	config)
		local -a kvs=()
		for a in "${A[@]:j}"; do
			[[ $a == -* ]] || kvs+=("$a")
		done
		if ((${#kvs[@]} >= 2)) && cf_gitrisky "${kvs[0]}" "${kvs[1]}"; then
			cf_what
			cf_block force-push "$REPLY" "setting ${kvs[0]} to ${kvs[1]} makes later pushes force or mirror pushes" "leave push settings alone; use git push --force-with-lease on your own branch"
		fi
		;;
	reset)
		for a in "${A[@]:j}"; do
			case $a in
			--ha | --har | --hard) hard=1 ;;
			--) break ;;
			-*) ;;
			*) [[ -z $ref ]] && ref=$a ;;
			esac
		done
		if ((hard)) && [[ -n $ref ]]; then
			a=${ref%%[~^@]*}
			case ${a##*/} in
			main | master | production)
				cf_what
				cf_block reset-hard-main "$REPLY" "git reset --hard onto $ref throws away local commits and uncommitted work" "git stash first, use git reset --keep, or save the work on a branch (git switch -c backup) before resetting"
				;;
			esac
		fi
		;;
	checkout | restore | rm | mv | stash | switch | clean | apply | am)
		for a in "${A[@]:j}"; do
			[[ $a == -* ]] || cf_check_write "$a" "git $sub of"
		done
		;;
	esac
}

cf_pushblock() {
	cf_what
	cf_block force-push "$REPLY" "$1 rewrites the remote history (force or mirror push) and can destroy others' commits" "use git push --force-with-lease on your own branch, or push to a new branch"
}

cf_crontab() {
	local j bad=0 list=0 nA=${#A[@]}
	for ((j = 0; j < nA; j++)); do
		case ${A[j]} in
		-l) list=1 ;;
		-u) ((j++)) ;;
		-u?*) ;;
		*) bad=1 ;;
		esac
	done
	if ((bad || !list)); then
		cf_what
		cf_block crontab "$REPLY" "it edits, replaces or removes the user's cron jobs" "crontab -l to read them; put a schedule in a file inside the project for the operator to install"
	fi
}

cf_chmod() {
	local a e=0 mode="" ref=0
	local -a tg=()
	for a in "${A[@]}"; do
		if ((!e)); then
			case $a in
			--)
				e=1
				continue
				;;
			--reference=*)
				ref=1
				continue
				;;
			--*) continue ;;
			-[a-zA-Z]*)
				[[ -z $mode && $ref == 0 && $a != -*[!rwxXst,]* ]] && mode=$a
				continue
				;;
			esac
		fi
		if [[ -z $mode && $ref == 0 ]]; then
			mode=$a
		else
			tg+=("$a")
		fi
	done
	for a in "${tg[@]}"; do
		cf_check_write "$a" "chmod of"
		cf_wwcheck "$a" "$mode"
	done
}

cf_find() {
	local j a nA=${#A[@]} del=0 tests=0 inexec=0
	local -a paths=() ex=()
	for ((j = 0; j < nA; j++)); do
		a=${A[j]}
		if ((inexec)); then
			if [[ $a == ';' || $a == '+' ]]; then
				inexec=0
				((${#paths[@]})) || paths=(.)
				ex=("${ex[@]//'{}'/${paths[0]%/}/*}")
				cf_sub_simple "${ex[@]}"
				case ${ex[0]##*/} in rm | rmdir | unlink | shred | mv | chmod | chown) del=1 ;; esac
				ex=()
			else
				ex+=("$a")
			fi
			continue
		fi
		case $a in
		-H | -L | -P | -O*) ;;
		-D | -maxdepth | -mindepth) ((j++)) ;;
		-delete) del=1 ;;
		-exec | -execdir | -ok | -okdir) inexec=1 ;;
		-depth | -xdev | -mount | -follow | -print | -print0 | -ls | -prune | -d | -noleaf | -ignore_readdir_race) ;;
		-* | '(' | '!' | ')') tests=1 ;;
		*) ((tests)) || paths+=("$a") ;;
		esac
	done
	((${#ex[@]})) && cf_sub_simple "${ex[@]}"
	((del)) || return 0
	((${#paths[@]})) || paths=(.)
	for a in "${paths[@]}"; do
		cf_check_remove "$a" "find deleting in"
		if cf_rootish "$a/*"; then
			cf_what
			cf_block rm-root "$REPLY" "deleting everything under $a would wipe the system, the home folder or the whole project" "delete only a specific folder inside the project"
		fi
	done
}

cf_sub_simple() {
	local -a W=("$@") R=()
	local CF_IN_FETCH=0 CF_IN_DAH=0 CF_IN_TEXT='' CF_S_FETCH=0 CF_S_STDIN='' CF_S_WRITES=0 CF_S_DAH=0
	cf_simple
}

cf_cd() {
	local d=${A[0]}
	[[ $d == -[PLe@] ]] && d=${A[1]}
	if [[ -z $d ]]; then
		CF_CWD=$CF_HOME
	elif [[ $d != - ]] && ! cf_unknown "$d"; then
		cf_norm "$d"
		CF_CWD=$REPLY
	fi
}

# ---------------------------------------------------------------- the command
cf_bash() {
	local cmd=$1 t
	CF_DETAIL=$cmd
	t=${cmd,,}
	if [[ $t == *drop* || $t == *truncate* || $t == *delete* ]]; then
		t=${t//[\'\"\\]/}
		[[ $t =~ $CF_RE_SQL ]] && CF_SQL=1
	fi
	cf_lex_string "$cmd"
	local sk=${CF_SKEL//' ;'/}
	if [[ $sk == *'{'*'&'* ]] && [[ $sk =~ $CF_RE_FORK1 || $sk =~ $CF_RE_FORK2 || $sk =~ $CF_RE_FORK3 ]]; then
		cf_block fork-bomb "$cmd" "this is a fork bomb: it exhausts the machine's processes" "nothing; do not run it"
	fi
	if ((CF_SQL && CF_SAWDB)); then
		if [[ $t =~ drop[[:space:]]+(table|database|schema) ]]; then
			cf_warn drop-table "$cmd"
		elif [[ $t =~ truncate[[:space:]]+table ]]; then
			cf_warn truncate-table "$cmd"
		else
			cf_warn delete-all "$cmd"
		fi
	fi
}

# ---------------------------------------------------------------- stage 2 main
cf_bash "$CF_CMD"
cf_finish

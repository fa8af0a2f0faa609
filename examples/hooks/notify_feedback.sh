#!/bin/sh
# A command hook: tell a person that an agent asks them something (a feedback request).
# The event is JSON on stdin; this script only needs the DROPSITED_* variables.
#   - a desktop notification with notify-send, when it is installed and a session is there;
#   - else a bell and one line on the terminal named by $DROPSITED_NOTIFY_TTY (or the
#     daemon's own terminal, when it has one);
#   - else one line appended to $DROPSITED_NOTIFY_LOG (default ~/.dropsited-notifications.log).
# Nothing from the task reaches a command line as code: it is passed as quoted arguments.
cat > /dev/null  # the JSON event; not needed here
title="dropsited: ${DROPSITED_EVENT:-event}"
line="${DROPSITED_SUMMARY:-a task needs you}"  # "feedback: 'title' (id) by agent asks: ..."

if command -v notify-send > /dev/null 2>&1 && { [ -n "$DISPLAY" ] || [ -n "$WAYLAND_DISPLAY" ]; }; then
    exec notify-send --app-name=dropsited -- "$title" "$line"
fi
tty="${DROPSITED_NOTIFY_TTY:-/dev/tty}"
if [ -w "$tty" ] && { printf '\adropsited: %s\n' "$line" > "$tty"; } 2> /dev/null; then
    exit 0
fi
log="${DROPSITED_NOTIFY_LOG:-$HOME/.dropsited-notifications.log}"
printf '%s dropsited: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$line" >> "$log"

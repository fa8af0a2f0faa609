"""Running dropsited under a service manager: sd_notify, and unit/plist/pm2 files.

`defaults` and `sdnotify` are what the daemon imports; `render`, `install` and
`templates` only serve `dropsited service install` and the shipped example files.
"""

"""The quickstart: the seed's walk-through, stored in MongoDB.

Run it with nothing configured and it uses the embedded local store under ~/.threadmem;
set THREADMEM_MONGODB_URI to use your own MongoDB. A second Python process then finds
the same thread, to show that it persists.
"""

import subprocess
import sys
from pprint import pp

from threadmem_mongo import RoleThread

owner_id = "random123"
public = True
name = "My thread"
metadata = {"purpose": "demo"}

thread = RoleThread(owner_id=owner_id, public=public, name=name, metadata=metadata)

role_user = "user"
role_assistant = "assistant"

thread.post(role=role_user, msg="Hey there!")
thread.post(role=role_assistant, msg="Hello!")
thread.post(
    role=role_user,
    msg="What do you see on this picture?",
    images=[
        "https://upload.wikimedia.org/wikipedia/commons/c/c7/Tabby_cat_with_blue_eyes-3336579.jpg"
    ],
)
thread.post(role=role_assistant, msg="I see a cat with blue eyes.")

pp(thread.messages(), width=100)
pp(thread.to_openai(), width=100)

# Another process, started from scratch, reads the same thread back from the store.
check = f"""
from threadmem_mongo import RoleThread
again = RoleThread.get({thread.id!r})
print(f"second process sees thread {{again.id}}: {{again.name!r}}, "
      f"{{len(again.messages())}} messages, version {{again.version}}")
print(again.messages()[-1].text)
"""
subprocess.run([sys.executable, "-c", check], check=True)

// The side list of kept conversations: open, rename (in place: Enter keeps, Escape cancels) and
// delete, each a labelled button, so all of it works from the keyboard.

/**
 * Shows `conversations` in the list `ul`, marking `currentId`.
 * @param {HTMLUListElement} ul
 * @param {{ id: string, title: string }[]} conversations
 * @param {string | null} currentId
 * @param {{ open: (id: string) => void, rename: (id: string, title: string) => void, remove: (id: string) => void }} actions
 */
export function showConversations(ul, conversations, currentId, actions) {
  ul.replaceChildren(...conversations.map((c) => {
    const li = document.createElement('li');
    li.dataset.id = c.id;
    const open = button('open', c.title, null, () => actions.open(c.id));
    if (c.id === currentId) open.setAttribute('aria-current', 'true');
    const rename = button('rename', '', `Rename “${c.title}”`, () => startRename(li, c, actions));
    const remove = button('delete', '', `Delete “${c.title}”`, () => actions.remove(c.id));
    li.append(open, rename, remove);
    return li;
  }));
}

function button(className, text, label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = text;
  if (label) b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

/** Swaps the conversation's title for a text box holding it. */
function startRename(li, conversation, actions) {
  const input = document.createElement('input');
  input.type = 'text';
  input.className = 'rename-box';
  input.value = conversation.title;
  input.setAttribute('aria-label', `New name for “${conversation.title}”`);
  let done = false;
  const end = (keep) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (keep && title && title !== conversation.title) actions.rename(conversation.id, title);
    else actions.rename(conversation.id, null); // redraws the list unchanged
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      end(true);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      end(false);
    }
  });
  input.addEventListener('blur', () => end(true));
  li.replaceChildren(input);
  input.focus();
  input.select();
}

//! Chat prompts: the model's own Jinja chat template (`tokenizer.chat_template`) rendered with
//! minijinja, configured the way Hugging Face renders it (trimmed blocks, Python string methods).

use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with the given role and content.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    own: bool,
}

/// ChatML, for models whose file carries no template.
const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

impl ChatTemplate {
    /// Compiles `source` (ChatML when `None`); `bos`/`eos` are exposed to it as `bos_token`/`eos_token`.
    pub fn new(source: Option<&str>, bos: Option<String>, eos: Option<String>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_string())
            .map_err(|e| Error::Template(e.to_string()))?;
        Ok(Self {
            env,
            bos: bos.unwrap_or_default(),
            eos: eos.unwrap_or_default(),
            own: source.is_some(),
        })
    }

    /// Whether the template is the model's own rather than the ChatML stand-in: a model without
    /// one (a base model) is meant for text completion, not chat.
    pub fn is_models_own(&self) -> bool {
        self.own
    }

    /// Renders the conversation, ending with the cue for the assistant's next reply.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        self.render_with(messages, true)
    }

    /// [`ChatTemplate::render`], with the assistant's header at the end or not (a conversation
    /// so far, to be continued: a prefix of what `render` gives once more messages follow).
    pub fn render_with(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_smollm2_template_with_default_system_prompt() {
        let t = ChatTemplate::new(Some(SMOLLM2), None, None).unwrap();
        let out = t.render(&[Message::new("user", "Hi")]).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% if messages[0].role == 'bad' %}{{ raise_exception('no bad roles') }}{% endif %}{{ messages[0].content.strip() }}";
        let t = ChatTemplate::new(Some(src), None, None).unwrap();
        assert_eq!(t.render(&[Message::new("user", "  x  ")]).unwrap(), "x");
        let err = t.render(&[Message::new("bad", "x")]).unwrap_err();
        assert!(err.to_string().contains("no bad roles"), "{err}");
    }

    #[test]
    fn default_is_chatml_and_bad_templates_are_errors() {
        let t = ChatTemplate::new(None, None, None).unwrap();
        assert!(!t.is_models_own());
        assert!(ChatTemplate::new(Some(SMOLLM2), None, None)
            .unwrap()
            .is_models_own());
        let out = t.render(&[Message::new("user", "Hi")]).unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(matches!(
            ChatTemplate::new(Some("{% for %}"), None, None),
            Err(Error::Template(_))
        ));
    }
}

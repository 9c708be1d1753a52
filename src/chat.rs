//! Chat prompts: the model's own Jinja chat template (`tokenizer.chat_template`) rendered with
//! minijinja, configured the way Hugging Face renders it (trimmed blocks, Python string methods).
//!
//! A template comes from the model file, so it is untrusted code: each render runs on a budget
//! of steps ([`FUEL`]) and may write only so much text ([`MAX_OUTPUT`]), and a template is tried
//! once when it is compiled, so a hostile one fails the load instead of the first message.

use std::io::Write;

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

/// Steps (minijinja instructions) one render may take. Real templates take a few hundred per
/// message; a conversation of 1,000 messages through a template with tools stays far below.
pub const FUEL: u64 = 2_000_000;

/// Bytes one render may write beyond twice the conversation's own text: headers and the
/// system prompt a template adds are small next to this.
pub const MAX_OUTPUT: usize = 1 << 20;

/// A writer that refuses to hold more than `cap` bytes (the render then stops with an error).
struct Capped {
    out: Vec<u8>,
    cap: usize,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.cap {
            self.over = true;
            return Err(std::io::Error::other("output cap reached"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ChatML, for models whose file carries no template.
const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

impl ChatTemplate {
    /// Compiles `source` (ChatML when `None`); `bos`/`eos` are exposed to it as `bos_token`/`eos_token`.
    pub fn new(source: Option<&str>, bos: Option<String>, eos: Option<String>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
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
        let template = Self {
            env,
            bos: bos.unwrap_or_default(),
            eos: eos.unwrap_or_default(),
            own: source.is_some(),
        };
        // One trial render of the simplest conversation: a template that runs out of steps or
        // writes without end fails here. Other errors (a `raise_exception` about roles) are the
        // template's rules, met again with the real conversation.
        match template.render(&[Message::new("user", "Hello")]) {
            Err(Error::TemplateLimit(m)) => Err(Error::TemplateLimit(m)),
            _ => Ok(template),
        }
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
        let text: usize = messages.iter().map(|m| m.content.len()).sum();
        let cap = text.saturating_mul(2).saturating_add(MAX_OUTPUT);
        let mut out = Capped {
            out: Vec::new(),
            cap,
            over: false,
        };
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        };
        match tmpl.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.out)
                .map_err(|_| Error::Template("rendered text that is not UTF-8".into())),
            Err(_) if out.over => Err(Error::TemplateLimit(format!(
                "it wrote more than {cap} bytes for a conversation of {text} bytes"
            ))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Error::TemplateLimit(format!(
                "it took more than {FUEL} steps to render"
            ))),
            Err(e) => Err(Error::Template(e.to_string())),
        }
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

    #[test]
    fn a_template_that_loops_without_end_fails_to_load_within_seconds() {
        // 10^9 steps if it ran: the fuel stops it at FUEL.
        let src = "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{{ '' }}{% endfor %}{% endfor %}{% endfor %}";
        let t0 = std::time::Instant::now();
        let err = ChatTemplate::new(Some(src), None, None).err().unwrap();
        assert!(t0.elapsed().as_secs_f64() < 5.0, "{:?}", t0.elapsed());
        assert!(matches!(err, Error::TemplateLimit(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("chat template") && msg.contains("steps"),
            "{msg}"
        );
    }

    #[test]
    fn a_template_that_writes_without_end_is_stopped_by_the_output_cap() {
        // 100,000 × 1,000 bytes = 100 MB in well under FUEL steps.
        let src = "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}";
        let err = ChatTemplate::new(Some(src), None, None).err().unwrap();
        assert!(matches!(err, Error::TemplateLimit(_)), "{err:?}");
        assert!(err.to_string().contains("wrote more than"), "{err}");
        // A template that is only hostile for some conversations fails when it meets one.
        let src = "{% for m in messages %}{% if m.content == 'boom' %}{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endif %}{{ m.content }}{% endfor %}";
        let t = ChatTemplate::new(Some(src), None, None).unwrap();
        let err = t.render(&[Message::new("user", "boom")]).unwrap_err();
        assert!(matches!(err, Error::TemplateLimit(_)), "{err:?}");
    }

    #[test]
    fn long_conversations_stay_within_the_limits() {
        let t = ChatTemplate::new(Some(SMOLLM2), None, None).unwrap();
        let long = "word ".repeat(200_000); // 1 MB in one message
        let mut messages = vec![Message::new("user", &long)];
        for i in 0..2_000 {
            let role = if i % 2 == 0 { "assistant" } else { "user" };
            messages.push(Message::new(role, "a short turn"));
        }
        let out = t.render(&messages).unwrap();
        assert!(out.len() > long.len() + 2_000 * 10, "{}", out.len());
    }
}
